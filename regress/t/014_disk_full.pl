# Full disks (issue 12): primary s1 -> edgeshard-relay (its log on one small tmpfs) ->
# edgeshard-apply (its data_dir on another). Under a running workload, first the edge's file
# system is filled, then the relay's: each daemon says so with the OS's words ("No space left on
# device"), keeps running (same process id throughout: nobody restarts it), keeps what readers
# see consistent (edgeshard-replica verify clean while full) and the relay keeps confirming
# upstream no more than its log holds; once the filler file is deleted both resume by
# themselves and every tenant's replica equals the primary, row for row. Last,
# edgeshard-replica wait for a tenant that is not on the edge yet waits until it appears.
#
# The file systems are mounted by scripts/test (root) under ES_SMALL_FS: ES_SMALL_FS/edge and
# ES_SMALL_FS/relay, each a tmpfs of its own (64 MiB, owned by postgres).
use strict;
use warnings;
use File::Path ();
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use lib $ENV{TESTDIR} ? "$ENV{TESTDIR}/t" : 't';
use RelayHarness;
use ReplicaCheck;

my ($fs, $why) = small_filesystems('edge', 'relay');
plan skip_all => "needs two small file systems to fill: $why" unless $fs;

my $token = 'disk-full-token';
$ENV{EDGESHARD_RELAY_TOKEN} = $token;
my @tenants = (1 .. 12);

my ($node, $conn) = start_primary();
$node->append_conf('postgresql.conf', "timezone = 'UTC'");
$node->reload;

# Whatever a previous run left on the small file systems goes.
for my $dir (values %$fs)
{
	opendir my $dh, $dir or die "cannot list $dir: $!";
	File::Path::rmtree("$dir/$_") for grep { !/^\.\.?$/ } readdir $dh;
}

my $relay = start_relay(name => 'r1', upstream => $conn, token => $token, slot => 'relay_df',
	data_dir => "$fs->{relay}/relay");
wait_until(sub { (metric($relay, 'edgeshard_relay_upstream_connected') // 0) == 1 }, 'relay upstream');
my $apply = apply_daemon(shards => [ [ 's1', $relay ] ], data_dir => "$fs->{edge}/edge", compact_deltas => 3);
launch_apply($apply, 1);
my $relay_pid = process_pid($relay->{handle});
my $apply_pid = process_pid($apply->{handle});
note("relay pid $relay_pid, edgeshard-apply pid $apply_pid");

my %owner = map { $_ => $node } @tenants;
my $batch = 0;

# One batch of the workload: rows of ~1.5 kB into every tenant, an update and a delete, so that
# both daemons keep writing.
sub workload
{
	$batch++;
	my $sql = '';
	for my $t (@tenants)
	{
		$sql .= "INSERT INTO items SELECT $t, $batch * 100 + g, repeat(md5(g::text || '$batch'), 48)"
		  . " FROM generate_series(1, 4) g;\n";
		$sql .= "UPDATE items SET v = 'updated in $batch' WHERE tenant_id = $t AND id = " . (($batch - 1) * 100 + 1) . ";\n"
		  if $batch > 1;
		$sql .= "DELETE FROM items WHERE tenant_id = $t AND id = " . (($batch - 1) * 100 + 2) . ";\n"
		  if $batch > 1;
	}
	$node->safe_psql('postgres', $sql);
}

# Both daemons still the processes started above.
sub same_processes
{
	my ($what) = @_;
	is(process_pid($apply->{handle}), $apply_pid, "$what: edgeshard-apply kept running (same pid)");
	is(process_pid($relay->{handle}), $relay_pid, "$what: the relay kept running (same pid)");
}

# The daemons caught up with the primary, then the checker and verify.
sub check_equal
{
	my ($what) = @_;
	ok(wait_apply_caught_up($apply, { s1 => $node }, "edgeshard-apply to catch up ($what)"),
		"$what: the edge caught up by itself");
	compare_replicas(data_dir => $apply->{data_dir}, tenants => \@tenants, owner => \%owner,
		tables => [ [ 'items', 'tenant_id, id' ] ], what => $what);
	verify_replicas($apply->{data_dir}, scalar(@tenants), $what);
}

workload() for 1 .. 3;
check_equal('before any disk is full');

# --- the edge's file system fills up -------------------------------------------------------------
my $filler = fill_filesystem($fs->{edge});
ok(wait_until(sub { workload(); (apply_metric($apply, 'edgeshard_apply_disk_full') // 0) == 1 },
		'edgeshard-apply to report its disk full'),
	'edgeshard-apply reports the full disk (edgeshard_apply_disk_full 1)');
workload() for 1 .. 5;    # changes go on arriving while the disk is full
wait_until(sub { slurp_file($apply->{log}) =~ /level=warning event=disk_full .*No space left on device/ },
	'edgeshard-apply to log the disk full');
like(slurp_file($apply->{log}), qr/event=disk_full error="No space left on device"/,
	"edgeshard-apply's log says 'No space left on device'");
cmp_ok(apply_metric($apply, 'edgeshard_apply_disk_full_errors_total') // 0, '>', 0,
	'edgeshard_apply_disk_full_errors_total counts the failed writes');
# Readers keep the last published state: every tenant readable, every checksum right.
verify_replicas($apply->{data_dir}, scalar(@tenants), 'while the edge is full');
same_processes('while the edge is full');
unlink $filler or die "cannot remove $filler: $!";
workload();
ok(wait_until(sub { (apply_metric($apply, 'edgeshard_apply_disk_full') // 1) == 0 }, 'edgeshard-apply to resume'),
	'edgeshard-apply resumes once space is back (edgeshard_apply_disk_full 0)');
check_equal('after the edge was full');
same_processes('after the edge was full');
unlike(slurp_file($apply->{log}), qr/level=error/, 'edgeshard-apply logged no error');

# --- the relay's file system fills up ------------------------------------------------------------
$filler = fill_filesystem($fs->{relay});
ok(wait_until(sub { workload(); (metric($relay, 'edgeshard_relay_log_write_blocked') // 0) == 1 },
		'the relay to report its log blocked'),
	'the relay reports its log blocked (edgeshard_relay_log_write_blocked 1)');
workload() for 1 .. 5;
# The relay never confirms upstream what its log does not hold (read in that order: durable only
# grows).
my $confirmed = $node->safe_psql('postgres',
	"SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'relay_df'");
my $durable = metric($relay, 'edgeshard_relay_durable_lsn');
cmp_ok(lsn_num($confirmed), '<=', $durable, "the slot is confirmed only up to the relay's durable position ($confirmed)");
# Subscribers are still served what is durable: the edge reaches it.
ok(wait_until(sub { (apply_metric($apply, 'edgeshard_apply_shard_applied_lsn', 's1') // 0) >= $durable },
		"edgeshard-apply to reach the relay's durable position"),
	"while the relay's disk is full the edge still gets what the relay's log holds");
wait_until(sub { relay_log($relay) =~ /event=log_write_blocked .*No space left on device/ }, 'the relay to log it');
like(relay_log($relay), qr/event=log_write_blocked error="No space left on device" path=\S+/,
	"the relay's log says 'No space left on device' and names the file");
cmp_ok(metric($relay, 'edgeshard_relay_log_write_errors_total') // 0, '>', 0,
	'edgeshard_relay_log_write_errors_total counts the failed writes');
my @blocked_lines = relay_log_lines($relay, qr/event=log_write_blocked/);
same_processes("while the relay's disk is full");
unlink $filler or die "cannot remove $filler: $!";
workload();
ok(wait_until(sub { (metric($relay, 'edgeshard_relay_log_write_blocked') // 1) == 0 }, 'the relay to resume'),
	'the relay resumes once space is back (edgeshard_relay_log_write_blocked 0)');
check_equal("after the relay's disk was full");
same_processes("after the relay's disk was full");
note(scalar(@blocked_lines) . " log_write_blocked lines while full (one per backoff step)");

# --- an initial copy on a full disk: abandoned, made again from a new snapshot once there is room ---
# A new edge with the primary set starts with 2 MiB of room left: its copy of the tenants' 8 MB
# runs out of space; it stays up, says so, and copies again once space is back.
# About 8 MB of rows that compress little first (the first edge takes them while there is room).
$node->safe_psql('postgres', q{
	INSERT INTO items SELECT t, 100000 + g,
		(SELECT string_agg(md5(random()::text || g || t || x), '') FROM generate_series(1, 1000) x)
	  FROM generate_series(1, 12) t, generate_series(1, 20) g});
check_equal('with bigger rows');
$filler = fill_filesystem($fs->{edge}, 2 << 20);
my $late = apply_daemon(tag => 'late', name => 'edge-late', shards => [ [ 's1', $relay ] ],
	primaries => { s1 => $conn }, data_dir => "$fs->{edge}/late");
launch_apply($late, 1);
my $late_pid = process_pid($late->{handle});
ok(wait_until(sub { slurp_file($late->{log}) =~ /event=copy_abandoned .*No space left on device/ },
		'the new edge to abandon its copy'),
	"an initial copy that runs out of space is abandoned, saying 'No space left on device'");
workload();
is(process_pid($late->{handle}), $late_pid, 'the new edge kept running on the full disk');
unlink $filler or die "cannot remove $filler: $!";
ok(wait_until(sub { slurp_file($late->{log}) =~ /event=copy_published/
			  && (apply_metric($late, 'edgeshard_apply_tenants_copying') // 1) == 0 },
		'the new edge to copy once there is room'),
	'the copy is made again once space is back');
ok(wait_apply_caught_up($late, { s1 => $node }, 'the new edge to catch up'), 'the new edge caught up');
compare_replicas(data_dir => $late->{data_dir}, tenants => \@tenants, owner => \%owner,
	tables => [ [ 'items', 'tenant_id, id' ] ], what => 'an edge whose copy met a full disk');
verify_replicas($late->{data_dir}, scalar(@tenants), 'the edge whose copy met a full disk');
is(process_pid($late->{handle}), $late_pid, 'the new edge never restarted');
check_equal('after the copy on a full disk');
stop_apply($late);

# --- edgeshard-replica wait for a tenant that is not on the edge yet ------------------------------
my $bookmark = $node->safe_psql('postgres', 'SELECT edgeshard.bookmark()');
my ($wait_out, $wait_err) = ('', '');
my $waiter = IPC::Run::start([ 'edgeshard-replica', 'wait', $apply->{data_dir}, '777', $bookmark, '120000' ],
	'>', \$wait_out, '2>', \$wait_err);
kill_at_exit($waiter);
usleep(500_000);
ok($waiter->pumpable, 'edgeshard-replica wait for a tenant that is not here yet keeps waiting');
$node->safe_psql('postgres', "INSERT INTO items VALUES (777, 1, 'late tenant')");
my $after = $node->safe_psql('postgres', 'SELECT edgeshard.bookmark()');
$waiter->finish;
is($waiter->result(0), 0, 'edgeshard-replica wait returns once the tenant appears past the bookmark')
  or diag("stdout: $wait_out\nstderr: $wait_err");
my ($status, $out, $err) = replica_cli('wait', $apply->{data_dir}, '777', $after, '60000');
is($status, 0, "the late tenant's own write becomes readable (wait $after)") or diag($err);
like(replica_rows($apply->{data_dir}, '777', 'items'), qr/"late tenant"/, "the late tenant's row is readable");
($status, $out, $err) = replica_cli('wait', $apply->{data_dir}, '888', $after, '300');
is($status, 1, 'edgeshard-replica wait for a tenant that never comes times out (exit 1)');
like($err, qr/timed out waiting for bookmark .*no replica here/, 'and says the tenant has no replica here');

is(stop_apply($apply), 0, 'edgeshard-apply stops cleanly');
is(stop_relay($relay), 0, 'the relay stops cleanly');
done_testing();
