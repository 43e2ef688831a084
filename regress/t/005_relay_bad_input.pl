# edgeshard-relay facing bad clients: a wrong token, bytes that are not this protocol, a HELLO of
# an unsupported version, a bad name or flags, a name already connected, a start in the future,
# no HELLO at all, a subscriber that stops reading while tens of MB are due, and (on a second
# relay with tiny segments and retention) a start below what the relay still holds. Each gets its
# ERROR code (PROTOCOL.md) and the connection closes; meanwhile a well-behaved subscriber,
# connected throughout, receives exactly the frames a direct slot of the same plugin sends.
use strict;
use warnings;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use lib $ENV{TESTDIR} ? "$ENV{TESTDIR}/t" : 't';
use RelayHarness;

my $token = 'bad-input-test-token';
$ENV{EDGESHARD_RELAY_TOKEN} = $token;
my $seed = $ENV{RELAY_TEST_SEED} // time();
srand($seed);
note("random seed $seed (set RELAY_TEST_SEED to repeat)");

my ($node, $conn) = start_primary();
$node->safe_psql('postgres', q{
CREATE PROCEDURE workload(k0 int, n int, pause float8) LANGUAGE plpgsql AS $$
BEGIN
	FOR k IN k0 .. k0 + n - 1 LOOP
		INSERT INTO items VALUES (k % 6 + 1, k, 'v' || k);
		IF k % 3 = 0 THEN
			UPDATE items SET v = v || '+' WHERE tenant_id = (k * 5 + 1) % 6 + 1 AND id = k - 4;
		END IF;
		COMMIT;
		IF pause > 0 THEN
			PERFORM pg_sleep(pause);
		END IF;
	END LOOP;
END $$;
});
$node->safe_psql('postgres', "SELECT pg_create_logical_replication_slot('es_ref', 'edgeshard')");

sub flush_lsn { return lsn_num($node->safe_psql('postgres', 'SELECT pg_current_wal_flush_lsn()')) }

my $handshake_ms = 3000;
my $relay = start_relay(name => 'gate', upstream => $conn, token => $token, slot => 'relay_gate',
	send_timeout_ms => 2000, handshake_timeout_ms => $handshake_ms);
# Tiny segments and retention: its log soon starts after the workload's beginning.
my $tiny = start_relay(name => 'tiny', upstream => $conn, token => $token, slot => 'relay_tiny',
	segment_bytes => '64kB', retention_min_bytes => 0, retention_max_bytes => '256kB',
	status_conninfo => 'off');
# A failing test must not leave the daemons running.
END
{
	for my $r ($relay, $tiny)
	{
		eval { $r->{handle}->kill_kill if $r && $r->{handle}->pumpable };
	}
}
wait_until(sub { (metric($relay, 'edgeshard_relay_upstream_connected') // 0) == 1 }, 'relay gate upstream');
wait_until(sub { (metric($tiny, 'edgeshard_relay_upstream_connected') // 0) == 1 }, 'relay tiny upstream');

# The well-behaved subscriber, connected from before the workload to its end.
my $good = start_file_subscriber(name => 'good', relay => $relay,
	file => "$PostgreSQL::Test::Utils::tmp_check/005_good.out");
wait_until(sub { (metric($relay, 'edgeshard_relay_subscriber_connected', 'good') // 0) == 1 },
	'subscriber good to connect');
my $from = flush_lsn();
my $from_text = lsn_text($from);

# A connection that never sends its HELLO: checked at the end (handshake timeout).
my $silent = raw_connect($relay);
my $silent_since = Time::HiRes::time();

# Small transactions run in the background while the bad clients come.
my $wl_out = '';
my $wl = IPC::Run::start([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $conn, '-c',
		'CALL workload(1, 1500, 0.002)' ], '>', \$wl_out, '2>&1');

# Runs edgeshard-dump against a relay; returns (exit status, stderr).
sub run_dump
{
	my ($r, @args) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'edgeshard-dump', '--relay', "127.0.0.1:$r->{port}", '--format', 'frames', @args ],
		'>', \$out, '2>', \$err, IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	return ($? >> 8, $err);
}

my $refused = 0;    # refusals relay gate must count

# --- wrong token ------------------------------------------------------------------------------
{
	local $ENV{EDGESHARD_RELAY_TOKEN} = 'not-the-token';
	my ($status, $err) = run_dump($relay, '--name', 'intruder');
	isnt($status, 0, 'a wrong token: edgeshard-dump fails');
	is($status, 3, 'a wrong token: exit status 3 (refused)');
	like($err, qr/relay refused: auth_failed/, 'a wrong token: auth_failed on stderr');
	$refused++;
}

# --- bytes that are not this protocol ----------------------------------------------------------
# Sends $bytes on a new connection and expects ERROR $code, then the end of the connection.
sub expect_refusal
{
	my ($what, $bytes, $code, $timeout) = @_;
	my $sock = raw_connect($relay);
	raw_send($sock, $bytes);
	my $res = expect_error($sock, $timeout // 10);
	is($res->{code}, $code, "$what: ERROR $code") or diag("read ended: $res->{why}");
	note("$what: message \"" . ($res->{message} // '') . '"');
	ok(defined $res->{message} && length $res->{message}, "$what: the ERROR says why");
	is($res->{skipped}, 0, "$what: nothing before the ERROR");
	ok($res->{closed}, "$what: the relay closes the connection after the ERROR");
	close $sock;
	$refused++;
	return $res;
}

expect_refusal('an HTTP request', "GET / HTTP/1.1\r\n\r\n", 'bad_request');
my $random = join '', map { chr(int(rand(256))) } 1 .. 4096;
# Random bytes are refused at once, or (when they happen to announce a long body) when the
# handshake timeout expires.
expect_refusal('random bytes', $random, 'bad_request', $handshake_ms / 1000 + 10);

# --- malformed or unacceptable HELLOs ---------------------------------------------------------
expect_refusal('an unsupported version range (2..3)',
	hello_message(name => 'future_client', token => $token, min_version => 2, max_version => 3),
	'unsupported_version');
expect_refusal('a HELLO with a bad magic',
	hello_message(name => 'bad_magic', token => $token, magic => 0x12345678), 'bad_request');
expect_refusal('a HELLO with an invalid name',
	hello_message(name => 'bad name!', token => $token), 'bad_request');
expect_refusal('a HELLO with unknown flags',
	hello_message(name => 'flagged', token => $token, flags => 4), 'bad_request');
expect_refusal('an ACK instead of a HELLO', pack('a V Q< q<', 'A', 16, 0, 0), 'bad_request');
expect_refusal('a HELLO cut short, then a second message',
	pack('a V', 'H', 6) . pack('V v', 0x50525345, 1) . pack('a V', 'H', 0), 'bad_request');

# --- the same name twice ----------------------------------------------------------------------
{
	my $first = raw_connect($relay);
	raw_send($first, hello_message(name => 'twin', token => $token));
	my ($type, $body) = read_message($first, 10);
	is($type, 'W', 'name twin: the first connection is welcomed');
	my ($version, $start, $position, $relay_name) = unpack('v Q< Q< v/a*', $body // '');
	is($version, 1, 'WELCOME: version 1');
	is($relay_name, 'gate', 'WELCOME: the relay name');
	expect_refusal('a second connection as twin', hello_message(name => 'twin', token => $token),
		'name_in_use');
	close $first;

	my ($status, $err) = run_dump($relay, '--name', 'good');
	is($status, 3, 'edgeshard-dump under the name of a connected subscriber: exit status 3');
	like($err, qr/relay refused: name_in_use/, 'edgeshard-dump under a connected name: name_in_use');
	$refused++;
}

# --- bad messages after the WELCOME -------------------------------------------------------------
{
	my $sock = raw_connect($relay);
	raw_send($sock, hello_message(name => 'overacker', token => $token));
	my ($type) = read_message($sock, 10);
	is($type, 'W', 'subscriber overacker is welcomed');
	# An ACK far beyond anything sent.
	raw_send($sock, pack('a V Q< q<', 'A', 16, lsn_num('FFFFFFFF/0'), 0));
	my $res = expect_error($sock, 10);
	is($res->{code}, 'bad_request', 'an ACK beyond what was sent: ERROR bad_request') or diag("read ended: $res->{why}");
	like($res->{message} // '', qr/beyond what was sent/, 'an ACK beyond what was sent: the message says so');
	ok($res->{closed}, 'an ACK beyond what was sent: the relay closes the connection');
	close $sock;
	$refused++;

	$sock = raw_connect($relay);
	raw_send($sock, hello_message(name => 'rehello', token => $token));
	($type) = read_message($sock, 10);
	is($type, 'W', 'subscriber rehello is welcomed');
	raw_send($sock, hello_message(name => 'rehello', token => $token));
	$res = expect_error($sock, 10);
	is($res->{code}, 'bad_request', 'a second HELLO: ERROR bad_request') or diag("read ended: $res->{why}");
	ok($res->{closed}, 'a second HELLO: the relay closes the connection');
	close $sock;
	$refused++;
}

# --- a start in the future ----------------------------------------------------------------------
{
	my ($status, $err) = run_dump($relay, '--name', 'ahead', '--start', 'FFFFFFFF/0');
	is($status, 3, 'a start in the future: exit status 3');
	like($err, qr/relay refused: start_in_future/, 'a start in the future: start_in_future');
	$refused++;
}

# --- no HELLO within the handshake timeout ------------------------------------------------------
{
	my $res = expect_error($silent, $handshake_ms / 1000 + 10);
	my $waited = Time::HiRes::time() - $silent_since;
	is($res->{code}, 'bad_request', 'no HELLO: ERROR bad_request') or diag("read ended: $res->{why}");
	like($res->{message} // '', qr/HELLO/, 'no HELLO: the message says so');
	ok($res->{closed}, 'no HELLO: the relay closes the connection');
	cmp_ok($waited, '>=', $handshake_ms / 1000 - 0.5, sprintf('no HELLO: refused after the handshake timeout (%.1f s)', $waited));
	close $silent;
	$refused++;
}

$wl->finish;
is($wl->result(0), 0, 'the small transactions ran to their end') or diag($wl_out);

# --- a subscriber that stops reading while tens of MB are due ------------------------------------
my $stalled = raw_connect($relay);
raw_send($stalled, hello_message(name => 'stalled', token => $token));
my ($wtype) = read_message($stalled, 10);
is($wtype, 'W', 'subscriber stalled is welcomed (and then reads nothing)');
wait_until(sub { (metric($relay, 'edgeshard_relay_subscriber_connected', 'stalled') // 0) == 1 },
	'subscriber stalled to stream');
# Large, hardly compressible values: about 30 MB of frames in 48 transactions.
my $big = '';
for my $i (1 .. 48)
{
	$big .= "INSERT INTO items SELECT (g % 5) + 1, 1000000 + $i * 1000 + g, "
	  . "(SELECT string_agg(md5(random()::text || g || i), '') FROM generate_series(1, 100) i) "
	  . "FROM generate_series(1, 200) g;\n";
}
$node->safe_psql('postgres', $big);
# More small transactions after the big ones.
$node->safe_psql('postgres', 'CALL workload(5001, 200, 0)');
my $end = flush_lsn();
ok(wait_until(sub { relay_log($relay) =~ /event=subscriber_error subscriber=stalled .*code=send_timeout/ },
		'the relay to drop subscriber stalled (send_timeout)', undef, 'quiet'),
	'the relay logged subscriber_error code=send_timeout for subscriber stalled');
$refused++;
# What the relay had written before it gave up, then the end of the connection.
{
	my ($frames, $why, $last) = (0, '', '');
	for (;;)
	{
		my ($type, $body) = read_message($stalled, 30, \$why);
		last unless defined $type;
		$last = $type;
		$frames++ if $type eq 'F';
	}
	like($why, qr/^eof/, "the relay closed the stalled connection ($frames FRAMEs were in transit, then $why"
		  . ($last eq 'E' ? ' after an ERROR' : '') . ')');
	close $stalled;
}

# --- the good subscriber got everything --------------------------------------------------------
wait_until(sub { (metric($relay, 'edgeshard_relay_subscriber_acked_lsn', 'good') // 0) >= $end },
	'subscriber good to ack the end of the workload');
ok($good->{handle}->pumpable, 'subscriber good stayed connected throughout');
is(stop_subscriber($good, 1), 0, 'subscriber good stops cleanly on SIGTERM') or diag(${ $good->{err} });

my ($ref_out, $ref_err) = ('', '');
IPC::Run::run([ 'edgeshard-dump', '--dbname', $conn, '--slot', 'es_ref', '--endpos', lsn_text($end),
		'--format', 'frames', '--option', 'compression=lz4', '--option', 'frame_bytes=65536' ],
	'>', \$ref_out, '2>', \$ref_err, IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
is($?, 0, 'the reference slot streams to endpos') or diag($ref_err);
my $reference = frame_lines($ref_out);
my $want = lines_between($reference, $from, $end, undef);
my $got = lines_between(frame_lines(subscriber_output($good)), $from, $end, undef);
cmp_ok(scalar @$want, '>', 2000, 'the reference holds the workload (' . scalar(@$want) . ' frames)');
is_deeply($got, $want, 'subscriber good receives exactly the reference frames')
  or diag('got ' . scalar(@$got) . ' frames, want ' . scalar(@$want));

# --- a start below the relay's retention ---------------------------------------------------------
wait_until(sub { (metric($tiny, 'edgeshard_relay_durable_lsn') // 0) >= $end },
	'relay tiny to reach the end of the workload');
wait_until(sub { (metric($tiny, 'edgeshard_relay_log_oldest_lsn') // 0) > $from },
	'relay tiny to drop the log of the workload\'s beginning (retention)');
{
	my ($status, $err) = run_dump($tiny, '--name', 'late', '--start', $from_text, '--endpos', lsn_text($end));
	is($status, 4, 'a start below the retention: exit status 4 (resync required)');
	like($err, qr/relay refused: resync_required: start \S+ is below the oldest position this relay holds/,
		'a start below the retention: resync_required, with a clear message');
	note("stderr: $err");
}

# --- the relay carried on ----------------------------------------------------------------------
# /metrics shows a snapshot the server refreshes every 250 ms.
wait_until(sub { (metric($relay, 'edgeshard_relay_refused_total') // 0) >= $refused }, 'the refusals to show in /metrics', 5);
my $refused_metric = metric($relay, 'edgeshard_relay_refused_total') // 0;
my $error_lines = relay_log_lines($relay, qr/event=subscriber_error /);
cmp_ok($refused_metric, '>=', $refused, "edgeshard_relay_refused_total counts the refusals (at least $refused)")
  or diag(join "\n", @$error_lines);
is($refused_metric, scalar @$error_lines, 'edgeshard_relay_refused_total = the subscriber_error lines in the log');
is(metric($relay, 'edgeshard_relay_upstream_connected'), 1, 'relay gate is still connected upstream');
# A subscriber connected when the relay stops is told so.
my $last = raw_connect($relay);
raw_send($last, hello_message(name => 'last', token => $token));
my ($ltype) = read_message($last, 10);
is($ltype, 'W', 'subscriber last is welcomed');
is(stop_relay($relay), 0, 'relay gate stops cleanly on SIGTERM');
my $lres = expect_error($last, 10);
is($lres->{code}, 'shutting_down', 'a subscriber connected at shutdown: ERROR shutting_down')
  or diag("read ended: $lres->{why}");
ok($lres->{closed}, 'a subscriber connected at shutdown: the connection closes');
close $last;
is(stop_relay($tiny), 0, 'relay tiny stops cleanly on SIGTERM');
my @errors = grep { /level=error/ } split /\n/, relay_log($relay);
is(scalar @errors, 0, 'relay gate logged no error') or diag(join "\n", @errors);
unlike(relay_log($tiny), qr/level=error/, 'relay tiny logged no error');
$node->stop;
done_testing();
