# edgeshard-apply end to end: shard primary s1 -> relay -> edgeshard-apply (tenants all). After a
# workload over 20 tenants (inserts, updates, deletes, a key-changing update, UPDATEs that leave a
# large TOASTed value unchanged, a multi-tenant transaction, a TRUNCATE), every tenant's replica
# read back with edgeshard-replica scan equals the primary's rows as row_to_json renders them.
# Then the daemon is killed with SIGKILL in the middle of a second workload and restarted: the
# replicas end equal again, nothing lost or applied twice, and edgeshard-replica verify is clean.
use strict;
use warnings;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib $ENV{TESTDIR} ? "$ENV{TESTDIR}/t" : 't';
use RelayHarness;

my $token = 'apply-test-token';
$ENV{EDGESHARD_RELAY_TOKEN} = $token;
my @tenants = (1 .. 20);

my ($node, $conn) = start_primary();
$node->append_conf('postgresql.conf', "timezone = 'UTC'");
$node->reload;
# n: a column to update without touching v; v stored out of line uncompressed, so large values
# are TOASTed and an UPDATE that leaves them alone sends them as "unchanged".
$node->safe_psql('postgres', q{
	ALTER TABLE items ADD COLUMN n int;
	ALTER TABLE items ALTER COLUMN v SET STORAGE EXTERNAL;
});

my $relay = start_relay(name => 'r1', upstream => $conn, token => $token, slot => 'relay_apply');
wait_until(sub { (metric($relay, 'edgeshard_relay_upstream_connected') // 0) == 1 }, 'relay upstream');

# --- the apply daemon ---------------------------------------------------------------------------
my %apply = (
	data_dir => "$PostgreSQL::Test::Utils::tmp_check/edge",
	metrics_port => PostgreSQL::Test::Cluster::get_free_port(),
	log => "$PostgreSQL::Test::Utils::log_path/apply.log",
	conf => "$PostgreSQL::Test::Utils::tmp_check/apply.conf");
open my $fh, '>', $apply{conf} or die "cannot write $apply{conf}: $!";
print $fh "name = 'edge1'\n";
print $fh "data_dir = '$apply{data_dir}'\n";
print $fh "shard = 's1=127.0.0.1:$relay->{port}'\n";
print $fh "tenants = all\n";
print $fh "flush_interval_ms = 20\n";
print $fh "position_flush_interval_ms = 200\n";
print $fh "compact_deltas = 2\n";
print $fh "reconnect_min_ms = 50\n";
print $fh "metrics_listen = '127.0.0.1:$apply{metrics_port}'\n";
close $fh;

# The daemon's /metrics as a hash "name{labels}" => value; undef when it does not answer.
sub apply_metrics
{
	return http_metrics($apply{metrics_port});
}

# One metric of the daemon, for shard s1 when $per_shard.
sub apply_metric
{
	my ($name, $per_shard) = @_;
	my $m = apply_metrics() or return undef;
	my $labels = 'subscriber="edge1"' . ($per_shard ? ',shard="s1"' : '');
	return $m->{"$name\{$labels\}"};
}

# Starts the daemon and waits until it streams from the relay.
sub start_apply
{
	$apply{handle} = IPC::Run::start([ 'edgeshard-apply', '--config', $apply{conf} ],
		'>>', $apply{log}, '2>>', $apply{log});
	kill_at_exit(sub { $apply{handle} }) unless $apply{at_exit}++;
	wait_until(sub { (apply_metric('edgeshard_apply_shard_connected', 1) // 0) == 1 },
		'edgeshard-apply to connect to the relay');
}

# Waits until the daemon's applied position for s1 reaches $lsn (text).
sub wait_applied
{
	my ($lsn, $what) = @_;
	my $want = lsn_num($lsn);
	wait_until(sub { (apply_metric('edgeshard_apply_shard_applied_lsn', 1) // 0) >= $want }, $what);
}

# Rows of a tenant on the primary and in the replica, one JSON object a line, by id.
sub primary_rows
{
	my ($t) = @_;
	return $node->safe_psql('postgres',
		"SELECT coalesce(string_agg(row_to_json(x)::text, E'\\n' ORDER BY id), '') FROM items x WHERE tenant_id = $t");
}
sub replica_rows
{
	my ($t) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'edgeshard-replica', 'scan', $apply{data_dir}, $t, 'items' ], '>', \$out, '2>', \$err);
	my $status = $? >> 8;
	# A tenant with no row of items yet has no table (1) or no directory (3).
	return '' if $status != 0 && $err =~ /no table|no such|absent|not exist|cannot open|manifest/i;
	die "edgeshard-replica scan $t failed ($status): $err" if $status != 0;
	chomp $out;
	return $out;
}

# Compares every tenant's replica with the primary.
sub compare_all
{
	my ($what) = @_;
	my $equal = 0;
	my $rows = 0;
	for my $t (@tenants)
	{
		my ($want, $got) = (primary_rows($t), replica_rows($t));
		$rows += scalar(grep { /\S/ } split /\n/, $want);
		if ($want eq $got) { $equal++; next; }
		diag("tenant $t differs ($what)\n--- primary\n$want\n--- replica\n$got");
	}
	is($equal, scalar(@tenants), "$what: every tenant's replica equals the primary ($rows rows)");
}

start_apply();

# A second daemon on the same data directory is refused at start (exit 1), the first goes on.
my ($second_out, $second_err) = ('', '');
IPC::Run::run([ 'edgeshard-apply', '--config', $apply{conf}, '--metrics_listen', '' ],
	'>', \$second_out, '2>', \$second_err, IPC::Run::timeout(30));
is($? >> 8, 1, 'a second edgeshard-apply on the same data_dir exits 1');
like($second_err, qr/data_dir .* is in use by another edgeshard-apply \(pid \d+\)/, 'it says the data_dir is in use');

# --- workload 1 ---------------------------------------------------------------------------------
my $sql = '';
for my $t (@tenants)
{
	$sql .= "INSERT INTO items SELECT $t, g, 't$t-' || g, g FROM generate_series(1, 30) g;\n";
}
# Large values stored out of line (EXTERNAL: not compressed), then UPDATEs leaving them alone.
$sql .= "INSERT INTO items VALUES (4, 500, repeat('big4-', 10000), 0), (5, 500, repeat('big5-', 10000), 0);\n";
$sql .= "UPDATE items SET n = 41 WHERE tenant_id = 4 AND id = 500;\n";
# A key-changing update of a TOASTed row: the new key gets the old row's unchanged value.
$sql .= "UPDATE items SET id = 501, n = 51 WHERE tenant_id = 5 AND id = 500;\n";
for my $k (1 .. 120)
{
	my ($t1, $t2) = (($k * 7) % 20 + 1, ($k * 11) % 20 + 1);
	$sql .= "BEGIN; UPDATE items SET v = 'u$k', n = $k WHERE tenant_id = $t1 AND id = " . ($k % 30 + 1) . ";\n";
	$sql .= "INSERT INTO items VALUES ($t2, " . (100 + $k) . ", repeat('x', " . ($k * 5) . "), NULL);\n";
	$sql .= "DELETE FROM items WHERE tenant_id = $t1 AND id = " . (($k + 9) % 30 + 1) . "; COMMIT;\n";
}
# A key-changing update within a tenant.
$sql .= "UPDATE items SET id = id + 1000 WHERE tenant_id = 3 AND id BETWEEN 1 AND 5;\n";
$sql .= "UPDATE items SET n = 42 WHERE tenant_id = 4 AND id = 500;\n";
$node->safe_psql('postgres', $sql);
my $mid = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
wait_applied($mid, 'edgeshard-apply to apply the first part of workload 1');
compare_all('before the truncate');

# TRUNCATE empties every tenant; then new rows, and the TOASTed row again.
$sql = "TRUNCATE items;\n";
for my $t (@tenants)
{
	$sql .= "INSERT INTO items SELECT $t, g, 'after-' || g, g FROM generate_series(1, 10 + $t) g;\n";
}
$sql .= "INSERT INTO items VALUES (6, 600, repeat('big6-', 10000), 0);\n";
$sql .= "UPDATE items SET n = 61 WHERE tenant_id = 6 AND id = 600;\n";
$sql .= "UPDATE items SET v = 'changed' WHERE tenant_id = 7 AND id = 3;\n";
$sql .= "DELETE FROM items WHERE tenant_id = 8 AND id > 5;\n";
$node->safe_psql('postgres', $sql);
my $end1 = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
wait_applied($end1, 'edgeshard-apply to apply workload 1');
compare_all('after workload 1');
# compact_deltas = 2: every tenant got a delta before and after the truncate, so each is merged
# into a new base on the compaction thread (installed by a later flush round).
ok(wait_until(sub { (apply_metric('edgeshard_apply_compactions_total') // 0) > 0 }, 'a compaction', 30, 1),
	'compactions ran in the background');
cmp_ok(apply_metric('edgeshard_apply_truncates_total') // 0, '>=', 1, 'the truncate was applied');
cmp_ok(apply_metric('edgeshard_apply_tenants') // 0, '==', 20, '20 tenant replicas open');

# --- workload 2, with a kill -9 of the daemon in the middle --------------------------------------
my $applied_before = apply_metric('edgeshard_apply_groups_applied_total');
my $script = '';
for my $k (1 .. 600)
{
	my $t = ($k * 3) % 20 + 1;
	my $u = ($k * 13) % 20 + 1;
	$script .= "BEGIN; INSERT INTO items VALUES ($t, " . (2000 + $k) . ", 'w2-$k', $k);\n";
	$script .= "UPDATE items SET n = coalesce(n, 0) + 1 WHERE tenant_id = $u AND id = " . ($k % 10 + 1) . ";\n";
	$script .= "DELETE FROM items WHERE tenant_id = $u AND id = " . (2000 + $k - 40) . "; COMMIT;\n";
	$script .= "UPDATE items SET n = $k WHERE tenant_id = 6 AND id = 600;\n" if $k % 50 == 0;
	$script .= "UPDATE items SET id = id + 100000 WHERE tenant_id = $t AND id = " . (2000 + $k) . ";\n" if $k % 25 == 0;
}
my $script_file = "$PostgreSQL::Test::Utils::tmp_check/workload2.sql";
open my $sf, '>', $script_file or die "cannot write $script_file: $!";
print $sf $script;
close $sf;
my ($wout, $werr) = ('', '');
my $worker = IPC::Run::start([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $conn, '-f', $script_file ],
	'>', \$wout, '2>', \$werr);
wait_until(sub { (apply_metric('edgeshard_apply_groups_applied_total') // 0) >= $applied_before + 150 },
	'edgeshard-apply to apply part of workload 2');
$apply{handle}->signal('KILL');
eval { $apply{handle}->finish };
my $killed_at = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
note("edgeshard-apply killed at $killed_at");
start_apply();
$worker->finish;
is($?, 0, 'workload 2 ran') or diag($werr);
my $end2 = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
wait_applied($end2, 'edgeshard-apply (restarted) to apply workload 2');
compare_all('after a kill -9 and restart in workload 2');

my ($vout, $verr) = ('', '');
IPC::Run::run([ 'edgeshard-replica', 'verify', $apply{data_dir} ], '>', \$vout, '2>', \$verr);
is($? >> 8, 0, 'edgeshard-replica verify is clean') or diag("$vout\n$verr");
is(scalar(grep { /: ok$/ } split /\n/, $vout), 20, 'verify checked 20 tenants');

# SIGTERM: flush, final ack, exit 0; the relay holds the ack.
$apply{handle}->signal('TERM');
$apply{handle}->finish;
is($apply{handle}->result(0), 0, 'edgeshard-apply stops cleanly on SIGTERM');
my $log = slurp_file($apply{log});
like($log, qr/event=shard_final_ack/, 'the final ack was sent at shutdown');
unlike($log, qr/level=error/, 'edgeshard-apply logged no error');
cmp_ok(metric($relay, 'edgeshard_relay_subscriber_acked_lsn', 'edge1') // 0, '>=', lsn_num($end2),
	'the relay holds the final ack');

is(stop_relay($relay), 0, 'relay stops cleanly');
$node->stop;
done_testing();
