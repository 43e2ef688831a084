# edgeshard-relay recovering from crashes: (a) kill -9 of the relay while a subscriber with a
# position file streams a workload of many small transactions over several tenants; the relay
# restarts on its log (cutting an unsynced tail, if any) and the subscriber resumes from its own
# persisted position: what it printed below that position, plus what the next run prints, is
# exactly the reference stream (a direct slot of the same plugin). (b) Two more kills at random
# moments, same rule. (c) A restart of the primary while the relay streams, then a crash of the
# primary (immediate stop): the relay reconnects each time and a subscriber connected throughout
# receives exactly the reference frames.
use strict;
use warnings;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use lib $ENV{TESTDIR} ? "$ENV{TESTDIR}/t" : 't';
use RelayHarness;

my $token = 'recovery-test-token';
$ENV{EDGESHARD_RELAY_TOKEN} = $token;
my $seed = $ENV{RELAY_TEST_SEED} // time();
srand($seed);
note("random seed $seed (set RELAY_TEST_SEED to repeat)");

my ($node, $conn) = start_primary();
# Many small transactions over 8 tenants, some touching two tenants; a commit each.
$node->safe_psql('postgres', q{
CREATE PROCEDURE workload(k0 int, n int, pause float8) LANGUAGE plpgsql AS $$
DECLARE
	t1 int;
	t2 int;
BEGIN
	FOR k IN k0 .. k0 + n - 1 LOOP
		t1 := k % 8 + 1;
		t2 := (k * 5 + 3) % 8 + 1;
		INSERT INTO items VALUES (t1, k, 'v' || k);
		IF k % 4 = 0 THEN
			UPDATE items SET v = v || '+' WHERE tenant_id = t2 AND id = k - 5;
			INSERT INTO items VALUES (t2, -k, repeat('y', k % 300));
		END IF;
		IF k % 10 = 0 THEN
			DELETE FROM items WHERE tenant_id = (k + 1) % 8 + 1 AND id = k - 9;
		END IF;
		IF k % 250 = 0 THEN
			-- Now and then a transaction of several frames per tenant (continuation frames).
			INSERT INTO items SELECT g % 3 + 1, -1000000 - k * 1000 - g, md5(g::text) || md5((g + k)::text)
			  FROM generate_series(1, 3000) g;
		END IF;
		COMMIT;
		IF pause > 0 THEN
			PERFORM pg_sleep(pause);
		END IF;
	END LOOP;
END $$;
});
$node->safe_psql('postgres', "SELECT pg_create_logical_replication_slot('es_ref', 'edgeshard')");

# Starts the workload procedure in the background; returns the IPC::Run handle.
sub start_workload
{
	my ($k0, $n, $pause, $out) = @_;
	return IPC::Run::start([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $conn, '-c',
			"CALL workload($k0, $n, $pause)" ], '>', $out, '2>&1');
}

sub flush_lsn { return lsn_num($node->safe_psql('postgres', 'SELECT pg_current_wal_flush_lsn()')) }

# Small segments: the kills also land on segment boundaries, and recovery reads many segments.
my $relay = start_relay(name => 'recovery', upstream => $conn, token => $token, slot => 'relay_recovery',
	segment_bytes => '64kB');
# A failing test must not leave the daemon running.
END { eval { $relay->{handle}->kill_kill if $relay && $relay->{handle}->pumpable } }
wait_until(sub { (metric($relay, 'edgeshard_relay_upstream_connected') // 0) == 1 }, 'relay upstream');

# --- (a) and (b): kill -9 of the relay, three times, while a subscriber streams ----------------
my %tenants = map { $_ => 1 } (1, 3, 6, 7);
my $posfile = "$PostgreSQL::Test::Utils::tmp_check/004_crash.position";
my @runs;    # per subscriber run: { out, err, position (the position file when it ended) }

# Starts a run of subscriber 'crash' from its position file.
sub start_crash_run
{
	my $s = start_file_subscriber(name => 'crash', relay => $relay, tenants => [ sort keys %tenants ],
		position_file => $posfile, file => "$PostgreSQL::Test::Utils::tmp_check/004_crash_run" . (@runs + 1) . '.out');
	wait_until(sub { (metric($relay, 'edgeshard_relay_subscriber_connected', 'crash') // 0) == 1 },
		'subscriber crash to connect');
	return $s;
}

# The position in the position file, as a number.
sub read_position
{
	my $text = slurp_file($posfile);
	chomp $text;
	return lsn_num($text);
}

my $sub = start_crash_run();
my $from_a = flush_lsn();
my $wl_out = '';
# scripts/test --long (ES_LONG): four times the workload and twelve kills.
my $long = $ENV{ES_LONG} ? 1 : 0;
my $wl = start_workload(1, $long ? 12000 : 3000, 0.002, \$wl_out);

# RELAY_TEST_KILLS (default 3, 12 with ES_LONG) sets the number of kills, for stress runs.
my $kills = $ENV{RELAY_TEST_KILLS} // ($long ? 12 : 3);
for my $kill (1 .. $kills)
{
	if ($kill == 1)
	{
		# Kill once part of the workload has been delivered.
		wait_until(sub {
			(metric($relay, 'edgeshard_relay_subscriber_frames_sent_total', 'crash') // 0) >= 40
			  && (metric($relay, 'edgeshard_relay_subscriber_sent_lsn', 'crash') // 0) > $from_a },
			'the relay to deliver part of the workload');
	}
	else
	{
		usleep(int((0.2 + rand(1.0)) * 1_000_000));
	}
	my $durable_before = metric($relay, 'edgeshard_relay_durable_lsn') // 0;
	my $running = $wl->pumpable ? 'running' : 'finished';
	kill_relay($relay);
	note("kill $kill: relay durable at " . lsn_text($durable_before) . ", workload $running");

	my $status = stop_subscriber($sub);
	is($status, 3, "kill $kill: the subscriber ends with status 3 when the relay vanishes")
	  or diag("stderr: ${ $sub->{err} }");
	like(${ $sub->{err} }, qr/acknowledged up to/, "kill $kill: the subscriber reports its last acknowledged position");
	my $position = read_position();
	push @runs, { out => subscriber_output($sub), err => ${ $sub->{err} }, position => $position };
	note("kill $kill: subscriber position file at " . lsn_text($position));

	my $log_size = -s $relay->{log};
	restart_relay($relay);
	my $after = substr(relay_log($relay), $log_size);
	my ($started) = $after =~ /event=relay_started .*?position=(\S+)/;
	ok(defined $started && lsn_num($started) >= $durable_before,
		"kill $kill: the relay recovers at least its durable position ("
		  . ($started // 'none') . ' >= ' . lsn_text($durable_before) . ')');
	cmp_ok(lsn_num($started // '0/0'), '>=', $position,
		"kill $kill: the recovered position covers what the subscriber had");
	# Whether the kill left an unsynced tail to cut depends on its moment: recorded, not asserted.
	note("kill $kill: " . ($after =~ /event=log_tail_cut (.*)/ ? "the relay cut an unsynced tail: $1" : 'no tail to cut'));
	wait_until(sub { (metric($relay, 'edgeshard_relay_upstream_connected') // 0) == 1 },
		"kill $kill: relay upstream again");
	cmp_ok(metric($relay, 'edgeshard_relay_durable_lsn') // 0, '>=', $durable_before,
		"kill $kill: the durable position does not go back");
	$sub = start_crash_run();
}

# The workload ends; the last run streams up to its end.
$wl->finish;
is($wl->result(0), 0, 'the workload ran to its end') or diag($wl_out);
my $end_a = flush_lsn();
wait_until(sub { (metric($relay, 'edgeshard_relay_durable_lsn') // 0) >= $end_a },
	'the relay durable position to reach the end of the workload');
wait_until(sub { (metric($relay, 'edgeshard_relay_subscriber_acked_lsn', 'crash') // 0) >= $end_a },
	'subscriber crash to ack the end of the workload');
is(stop_subscriber($sub, 1), 0, 'the last run of subscriber crash stops cleanly on SIGTERM')
  or diag(${ $sub->{err} });
push @runs, { out => subscriber_output($sub), err => ${ $sub->{err} }, position => undef };

my $relay_log_a = relay_log($relay);
unlike($relay_log_a, qr/level=error/, 'the relay logged no error through the kills');

# --- (c): the primary restarts, then crashes, while the relay streams ---------------------------
my $steady = start_file_subscriber(name => 'steady', relay => $relay,
	file => "$PostgreSQL::Test::Utils::tmp_check/004_steady.out");
wait_until(sub { (metric($relay, 'edgeshard_relay_subscriber_connected', 'steady') // 0) == 1 },
	'subscriber steady to connect');
my $from_c = flush_lsn();
my $wl_c_out = '';
my $wl_c = start_workload(100001, 100000, 0.002, \$wl_c_out);
wait_until(sub { (metric($relay, 'edgeshard_relay_subscriber_frames_sent_total', 'steady') // 0) >= 100 },
	'the relay to deliver part of the second workload');
my $reconnects_before = metric($relay, 'edgeshard_relay_upstream_reconnects_total') // 0;
my $log_size_c = -s $relay->{log};
$node->restart;
$wl_c->finish;
isnt($wl_c->result(0), 0, 'the workload session was ended by the restart');
wait_until(sub {
	(metric($relay, 'edgeshard_relay_upstream_reconnects_total') // 0) > $reconnects_before
	  && (metric($relay, 'edgeshard_relay_upstream_connected') // 0) == 1 },
	'the relay to reconnect to the restarted primary');
my $after_c = substr(relay_log($relay), $log_size_c);
like($after_c, qr/event=upstream_lost.*\n(?:.*\n)*.*event=upstream_connected/,
	'the relay logged upstream_lost, then upstream_connected');
# The workload goes on after the restart.
$node->safe_psql('postgres', 'CALL workload(300001, 600, 0)');

# Then the primary crashes (immediate stop): its slots come back with the positions of the last
# checkpoint, behind what the relay has logged and confirmed; the relay resumes from its own.
$wl_c = start_workload(400001, 100000, 0.002, \$wl_c_out);
my $frames_before = metric($relay, 'edgeshard_relay_subscriber_frames_sent_total', 'steady') // 0;
wait_until(sub { (metric($relay, 'edgeshard_relay_subscriber_frames_sent_total', 'steady') // 0) >= $frames_before + 100 },
	'the relay to deliver part of the third workload');
$reconnects_before = metric($relay, 'edgeshard_relay_upstream_reconnects_total') // 0;
$node->stop('immediate');
$node->start;
$wl_c->finish;
isnt($wl_c->result(0), 0, 'the workload session was ended by the crash');
wait_until(sub {
	(metric($relay, 'edgeshard_relay_upstream_reconnects_total') // 0) > $reconnects_before
	  && (metric($relay, 'edgeshard_relay_upstream_connected') // 0) == 1 },
	'the relay to reconnect to the primary after its crash');
$node->safe_psql('postgres', 'CALL workload(500001, 600, 0)');
my $end_c = flush_lsn();
wait_until(sub { (metric($relay, 'edgeshard_relay_subscriber_acked_lsn', 'steady') // 0) >= $end_c },
	'subscriber steady to ack the end of the workload');
ok($steady->{handle}->pumpable, 'subscriber steady stayed connected through the restart and the crash');
is(stop_subscriber($steady, 1), 0, 'subscriber steady stops cleanly on SIGTERM')
  or diag(${ $steady->{err} });
$after_c = substr(relay_log($relay), $log_size_c);
note('duplicates skipped by the relay: ' . (metric($relay, 'edgeshard_relay_duplicates_skipped_total') // '?'));
my @steady_connects = $after_c =~ /event=subscriber_connected subscriber=steady /g;
is(scalar @steady_connects, 0, 'subscriber steady did not reconnect');

# --- the reference, straight from its own slot ---------------------------------------------------
my $end_text = lsn_text($end_c);
my ($ref_out, $ref_err) = ('', '');
IPC::Run::run([ 'edgeshard-dump', '--dbname', $conn, '--slot', 'es_ref', '--endpos', $end_text,
		'--format', 'frames', '--option', 'compression=lz4', '--option', 'frame_bytes=65536' ],
	'>', \$ref_out, '2>', \$ref_err, IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
is($?, 0, 'the reference slot streams to endpos') or diag($ref_err);
my $reference = frame_lines($ref_out);

# (a)+(b): each run's lines below the position it died with, then the last run's lines.
my @got;
for my $run (@runs)
{
	my $lines = frame_lines($run->{out});
	$lines = [ grep { lsn_num($_->[0]) < $run->{position} } @$lines ] if defined $run->{position};
	push @got, @$lines;
}
my $got_a = lines_between(\@got, $from_a, $end_a, \%tenants);
my $want_a = lines_between($reference, $from_a, $end_a, \%tenants);
cmp_ok(scalar @$want_a, '>', 1000, 'the reference holds the first workload (' . scalar(@$want_a) . ' frames of the tenants)');
cmp_ok(scalar(grep { / - / } @$want_a), '>', 0, 'the first workload has transactions of several frames per tenant');
is_deeply($got_a, $want_a, "across $kills relay crashes, subscriber crash receives exactly its tenants' frames")
  or diag_difference($got_a, $want_a);
for my $i (0 .. $#runs - 1)
{
	my $n = grep { lsn_num((split / /)[0]) < $runs[$i]{position} } map { join ' ', @$_ } @{ frame_lines($runs[$i]{out}) };
	note("run " . ($i + 1) . ": $n frames kept below " . lsn_text($runs[$i]{position}));
}

# (c)
my $got_c = lines_between(frame_lines(subscriber_output($steady)), $from_c, $end_c, undef);
my $want_c = lines_between($reference, $from_c, $end_c, undef);
cmp_ok(scalar @$want_c, '>', 300, 'the reference holds the second workload (' . scalar(@$want_c) . ' frames)');
is_deeply($got_c, $want_c, 'through a primary restart and a primary crash, subscriber steady receives exactly the reference frames')
  or diag_difference($got_c, $want_c);

is(stop_relay($relay), 0, 'the relay stops cleanly on SIGTERM');
unlike(relay_log($relay), qr/level=error/, 'the relay logged no error');
$node->stop;
done_testing();

# Shows where two line lists first differ.
sub diag_difference
{
	my ($got, $want) = @_;
	my $i = 0;
	$i++ while $i < @$got && $i < @$want && $got->[$i] eq $want->[$i];
	diag('got ' . scalar(@$got) . ' lines, want ' . scalar(@$want) . "; first difference at line $i");
	diag("got:  " . join("\n      ", @$got[ $i .. ($i + 4 < $#$got ? $i + 4 : $#$got) ])) if $i < @$got;
	diag("want: " . join("\n      ", @$want[ $i .. ($i + 4 < $#$want ? $i + 4 : $#$want) ])) if $i < @$want;
	my %seen;
	my @dups = grep { $seen{$_}++ } @$got;
	diag(scalar(@dups) . " duplicate lines in got, e.g. $dups[0]") if @dups;
}
