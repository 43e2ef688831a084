# edgeshard-apply's initial copy (DESIGN.md 6.1): tenants whose rows were written before the relay
# started (so the relay's log cannot rebuild them) are copied from the primary in one snapshot
# while pgbench keeps moving money between accounts, inserting and deleting events; the stream is
# applied on top (transactions the snapshot already has are skipped) and the tenants are
# published once the stream passes the copy's end. Checked: every tenant's replica equals the
# primary row for row (accounts, a hash-partitioned table with an aclitem column that has no
# binary send function); readers polling during the copy never see an unpublished tenant or a
# money sum other than the constant; `tenants` as a list copies only those tenants; a daemon
# killed with SIGKILL between the copy and its publication discards the copy at restart and
# copies again.
use strict;
use warnings;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib $ENV{TESTDIR} ? "$ENV{TESTDIR}/t" : 't';
use RelayHarness;

my $token = 'copy-test-token';
$ENV{EDGESHARD_RELAY_TOKEN} = $token;
my @tenants = (1 .. 40);
my $accounts = 10;        # per tenant, 1000 each: every tenant's sum stays 10000
my $tmp = $PostgreSQL::Test::Utils::tmp_check;

my ($node, $conn) = start_primary();
$node->safe_psql('postgres', qq{
	CREATE TABLE accounts (tenant_id bigint, id int, balance bigint NOT NULL, moves bigint NOT NULL DEFAULT 0,
		PRIMARY KEY (tenant_id, id));
	SELECT edgeshard.distribute_table('accounts', 'tenant_id');
	CREATE TABLE events (tenant_id bigint, id bigint, note text, acl aclitem, PRIMARY KEY (tenant_id, id))
		PARTITION BY HASH (tenant_id);
	CREATE TABLE events_0 PARTITION OF events FOR VALUES WITH (MODULUS 2, REMAINDER 0);
	CREATE TABLE events_1 PARTITION OF events FOR VALUES WITH (MODULUS 2, REMAINDER 1);
	SELECT edgeshard.distribute_table('events', 'tenant_id');
	CREATE SEQUENCE event_ids START 1000000;
	INSERT INTO accounts SELECT t, a, 1000 FROM generate_series(1, 40) t, generate_series(1, $accounts) a;
	INSERT INTO events SELECT t, g, 'old ' || g, 'postgres=r/postgres' FROM generate_series(1, 40) t, generate_series(1, 25) g;
	INSERT INTO items SELECT t, g, repeat('v', g) FROM generate_series(1, 40) t, generate_series(1, 5) g;
});

# The relay starts after the history: its log has none of the rows above.
my $relay = start_relay(name => 'copy_r1', upstream => $conn, token => $token, slot => 'relay_copy');
wait_until(sub { (metric($relay, 'edgeshard_relay_upstream_connected') // 0) == 1 }, 'relay upstream');

# --- concurrent writes: pgbench, 2 clients --------------------------------------------------------
my $bench_script = "$tmp/transfer.sql";
open my $bf, '>', $bench_script or die "cannot write $bench_script: $!";
print $bf q{\set t random(1, 40)
\set a random(1, 10)
\set b random(1, 10)
\set amount random(1, 50)
\set e random(1, 25)
BEGIN;
UPDATE accounts SET balance = balance - :amount, moves = moves + 1 WHERE tenant_id = :t AND id = :a;
UPDATE accounts SET balance = balance + :amount, moves = moves + 1 WHERE tenant_id = :t AND id = :b;
INSERT INTO events VALUES (:t, nextval('event_ids'), 'moved ' || :amount, 'postgres=arw/postgres');
DELETE FROM events WHERE tenant_id = :t AND id = :e;
UPDATE items SET v = v || '+' WHERE tenant_id = :t AND id = :b % 5 + 1;
COMMIT;
};
close $bf;

# Starts pgbench for $secs seconds in the background.
sub start_pgbench
{
	my ($secs, $name) = @_;
	# Output to a file: nothing pumps a pipe while the test waits, and pgbench must never block.
	my %w = (log => "$PostgreSQL::Test::Utils::log_path/pgbench_$name.log");
	$w{handle} = IPC::Run::start(
		[ 'pgbench', '-n', '-c', '2', '-j', '2', '-T', $secs, '-f', $bench_script, $conn ],
		'>', $w{log}, '2>&1');
	kill_at_exit($w{handle});
	return \%w;
}

# Waits for pgbench to end; checks it committed transactions without error.
sub finish_pgbench
{
	my ($w, $what) = @_;
	$w->{handle}->finish;
	my $out = slurp_file($w->{log});
	is($?, 0, "$what: pgbench ran") or diag($out);
	my ($tx) = $out =~ /number of transactions actually processed: (\d+)/;
	cmp_ok($tx // 0, '>', 200, "$what: pgbench committed transactions during the copy") or diag($out);
}

# --- apply daemons ------------------------------------------------------------------------------
# A daemon's settings and handles; tenants 'all' or a list.
sub new_apply
{
	my ($name, $tenants) = @_;
	my %a = (
		name => $name,
		data_dir => "$tmp/$name",
		metrics_port => PostgreSQL::Test::Cluster::get_free_port(),
		log => "$PostgreSQL::Test::Utils::log_path/$name.log",
		conf => "$tmp/$name.conf");
	my $primary = $conn =~ s/'/''/gr;
	open my $fh, '>', $a{conf} or die "cannot write $a{conf}: $!";
	print $fh "name = '$name'\n";
	print $fh "data_dir = '$a{data_dir}'\n";
	print $fh "shard = 's1=127.0.0.1:$relay->{port}'\n";
	print $fh "primary = 's1=$primary'\n";
	print $fh "tenants = '$tenants'\n";
	print $fh "flush_interval_ms = 20\n";
	print $fh "position_flush_interval_ms = 200\n";
	print $fh "reconnect_min_ms = 50\n";
	print $fh "metrics_listen = '127.0.0.1:$a{metrics_port}'\n";
	close $fh;
	return \%a;
}

# The daemon's metric (per shard s1 when $per_shard); undef when it does not answer.
sub apply_metric
{
	my ($a, $name, $per_shard) = @_;
	my $m = http_metrics($a->{metrics_port}) or return undef;
	my $labels = "subscriber=\"$a->{name}\"" . ($per_shard ? ',shard="s1"' : '');
	return $m->{"$name\{$labels\}"};
}

# Starts the daemon (it copies before it applies).
sub start_apply
{
	my ($a) = @_;
	$a->{handle} = IPC::Run::start([ 'edgeshard-apply', '--config', $a->{conf} ],
		'>>', $a->{log}, '2>>', $a->{log});
	kill_at_exit(sub { $a->{handle} }) unless $a->{at_exit}++;
	wait_until(sub { defined apply_metric($a, 'edgeshard_apply_tenants') }, "$a->{name} to serve /metrics");
}

# Stops the daemon with SIGTERM; checks exit status 0.
sub stop_apply
{
	my ($a) = @_;
	$a->{handle}->signal('TERM');
	$a->{handle}->finish;
	is($a->{handle}->result(0), 0, "$a->{name} stops cleanly");
}

# Waits until the daemon has published everything up to the primary's current position.
sub wait_caught_up
{
	my ($a, $what) = @_;
	my $want = lsn_num($node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()'));
	wait_until(
		sub {
			(apply_metric($a, 'edgeshard_apply_shard_applied_lsn', 1) // 0) >= $want
			  && (apply_metric($a, 'edgeshard_apply_tenants_copying') // 1) == 0;
		},
		$what);
}

# A tenant's rows of a table: primary (row_to_json by key) and replica (edgeshard-replica scan).
sub primary_rows
{
	my ($t, $table) = @_;
	return $node->safe_psql('postgres',
		"SELECT coalesce(string_agg(row_to_json(x)::text, E'\\n' ORDER BY id), '') FROM $table x WHERE tenant_id = $t");
}
sub replica_scan
{
	my ($a, $t, $table) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'edgeshard-replica', 'scan', $a->{data_dir}, $t, $table ], '>', \$out, '2>', \$err);
	chomp $out;
	return ($? >> 8, $out, $err);
}

# Compares the tenants' replicas with the primary, table by table.
sub compare_tenants
{
	my ($a, $what, @which) = @_;
	my ($equal, $rows) = (0, 0);
	for my $t (@which)
	{
		my $same = 1;
		for my $table ([ 'accounts', 'public.accounts' ], [ 'items', 'public.items' ],
			[ 'events', 'public.events_0' ], [ 'events', 'public.events_1' ])
		{
			my ($parent, $leaf) = @$table;
			my $want = $parent eq 'events'
			  ? $node->safe_psql('postgres',
				"SELECT coalesce(string_agg(row_to_json(x)::text, E'\\n' ORDER BY id), '') FROM $leaf x WHERE tenant_id = $t")
			  : primary_rows($t, $parent);
			my ($status, $got, $err) = replica_scan($a, $t, $leaf);
			$got = '' if $status != 0 && $want eq '' && $err =~ /no table/;
			$rows += scalar(grep { /\S/ } split /\n/, $want);
			next if $want eq $got;
			$same = 0;
			diag("tenant $t $leaf differs ($what, scan status $status $err)\n--- primary\n$want\n--- replica\n$got");
		}
		$equal += $same;
	}
	is($equal, scalar(@which), "$what: every tenant's replica equals the primary ($rows rows)");
}

# Reads every tenant's accounts from the replica: counts reads of published tenants and sums
# that are not 10000 (a half-applied transfer, or a copy published before it caught up).
sub check_sums
{
	my ($a, $state) = @_;
	for my $t (@tenants)
	{
		my ($status, $out, $err) = replica_scan($a, $t, 'public.accounts');
		if ($status != 0)
		{
			$state->{unpublished}++;
			$state->{other_errors}++ unless $err =~ /being copied|no such|absent|cannot open|does not exist/i;
			next;
		}
		my $sum = 0;
		my $n = 0;
		for my $line (split /\n/, $out)
		{
			next unless $line =~ /"balance":(-?\d+)/;
			$sum += $1;
			$n++;
		}
		$state->{reads}++;
		if ($n != $accounts || $sum != 1000 * $accounts)
		{
			$state->{bad}++;
			diag("tenant $t: $n accounts, sum $sum") if ($state->{bad} // 0) <= 5;
		}
	}
}

# The pid of the relay's walsender on the primary. Freezing it (SIGSTOP) keeps the relay up but
# starves it: transactions committed meanwhile reach the edge only after SIGCONT, whatever the
# machine's speed, so the copy's snapshot surely falls between streamed transactions.
sub relay_walsender
{
	my $pid = $node->safe_psql('postgres', "SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'relay_copy'");
	ok($pid =~ /^\d+$/, "the relay's walsender is pid $pid");
	return $pid;
}

# Waits until pgbench has committed at least $n more transfers.
sub wait_transfers
{
	my ($n, $what) = @_;
	my $moves = sub { $node->safe_psql('postgres', 'SELECT sum(moves) FROM accounts') };
	my $from = $moves->();
	wait_until(sub { $moves->() >= $from + 2 * $n }, $what);
}

# --- 1. tenants = all, copy under concurrent writes ----------------------------------------------
my $bench = start_pgbench(15, 'all');
my $walsender = relay_walsender();
kill 'STOP', $walsender;
wait_transfers(100, 'transfers the relay does not have yet');
my $all = new_apply('edge_all', 'all');
start_apply($all);
wait_until(sub { (apply_metric($all, 'edgeshard_apply_copies_total') // 0) >= 1 }, 'edge_all copy');
wait_transfers(100, 'transfers after the copy');
kill 'CONT', $walsender;
my %reads = (reads => 0, bad => 0, unpublished => 0, other_errors => 0);
check_sums($all, \%reads) while $bench->{handle}->pumpable;
finish_pgbench($bench, 'all');
wait_caught_up($all, 'edge_all to publish and catch up');
check_sums($all, \%reads);
cmp_ok($reads{reads}, '>', 0, "readers read published tenants during the workload ($reads{reads} reads, "
	  . "$reads{unpublished} refusals before publication)");
is($reads{bad}, 0, 'no read saw a money sum other than 10000');
is($reads{other_errors}, 0, 'readers got no error other than "still being copied"');
compare_tenants($all, 'tenants = all', @tenants);
is(apply_metric($all, 'edgeshard_apply_copies_total'), 1, 'one shard copy');
cmp_ok(apply_metric($all, 'edgeshard_apply_copy_rows_total') // 0, '>=', 40 * (10 + 25 + 5) - 200,
	'the copy read the rows written before the relay started');
my $in_snapshot = apply_metric($all, 'edgeshard_apply_groups_in_snapshot_total') // 0;
cmp_ok($in_snapshot, '>=', 100, "streamed transactions the copy already had were skipped ($in_snapshot groups)");
cmp_ok(apply_metric($all, 'edgeshard_apply_groups_applied_total') // 0, '>=', 100,
	'transactions after the snapshot were applied on top of the copy');
my $log = slurp_file($all->{log});
like($log, qr/event=copy_done .*snapshot=\d+:\d+:/, 'the copy logged its snapshot');
like($log, qr/event=copy_published /, 'the copied tenants were published');
unlike($log, qr/level=error/, 'edge_all logged no error');
my ($vout, $verr) = ('', '');
IPC::Run::run([ 'edgeshard-replica', 'verify', $all->{data_dir} ], '>', \$vout, '2>', \$verr);
is($? >> 8, 0, 'edgeshard-replica verify is clean') or diag("$vout\n$verr");

# A restart copies nothing again (the shard is marked copied) and keeps streaming.
stop_apply($all);
start_apply($all);
$node->safe_psql('postgres', "UPDATE accounts SET balance = balance + 5 WHERE tenant_id = 3 AND id = 1;
	UPDATE accounts SET balance = balance - 5 WHERE tenant_id = 3 AND id = 2;");
wait_caught_up($all, 'edge_all after a restart');
is(apply_metric($all, 'edgeshard_apply_copies_total'), 0, 'no copy after a restart');
compare_tenants($all, 'after a restart', 3);
stop_apply($all);

# --- 2. a tenant list, and a kill -9 between the copy and its publication -------------------------
# The relay's walsender is frozen (SIGSTOP): the relay stays up but receives nothing new, so the
# stream cannot pass the end of a copy taken meanwhile and the copied tenants stay unpublished.
$walsender = relay_walsender();
kill 'STOP', $walsender;
$bench = start_pgbench(10, 'list');
my $list = new_apply('edge_list', '5,17,33');
start_apply($list);
wait_until(sub { (apply_metric($list, 'edgeshard_apply_copies_total') // 0) >= 1 }, 'edge_list copy');
my ($status, $out, $err) = replica_scan($list, 17, 'public.accounts');
isnt($status, 0, 'a copied tenant is not readable before the stream passes the copy');
like($err, qr/being copied/i, 'the reader says the tenant is still being copied');
is(apply_metric($list, 'edgeshard_apply_tenants_copying'), 3, '3 tenants wait for their copy');
$list->{handle}->signal('KILL');
eval { $list->{handle}->finish };
start_apply($list);
wait_until(sub { (apply_metric($list, 'edgeshard_apply_copies_total') // 0) >= 1 }, 'edge_list copy after restart');
kill 'CONT', $walsender;
finish_pgbench($bench, 'list');
wait_caught_up($list, 'edge_list to publish and catch up after a kill -9');
$log = slurp_file($list->{log});
my $discarded = () = $log =~ /event=copy_discarded/g;
is($discarded, 3, 'the restart discarded the 3 unpublished copies');
my $copies = () = $log =~ /event=copy_done /g;
is($copies, 2, 'and copied them again');
like($log, qr/event=copy_done .*tenants=3 /, 'the list copy covered the 3 tenants');
compare_tenants($list, 'tenants = 5,17,33 after a kill -9', 5, 17, 33);
my @dirs = map { s{.*/}{}r } glob("$list->{data_dir}/tenants/*");
is_deeply([ sort @dirs ], [ sort qw(5 17 33) ], 'only the listed tenants have replicas');
IPC::Run::run([ 'edgeshard-replica', 'verify', $list->{data_dir} ], '>', \$vout, '2>', \$verr);
is($? >> 8, 0, 'edgeshard-replica verify is clean (list)') or diag("$vout\n$verr");
stop_apply($list);

is(stop_relay($relay), 0, 'relay stops cleanly');
$node->stop;
done_testing();
