# Two real shard primaries (s1, s2) with the same map: writes routed by shard_for() land on their
# owner, the same writes on the other shard are refused, map changes reach other sessions, and the
# catalog survives pg_dump/restore.
use strict;
use warnings;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $tenants = 600;
my %node;
for my $name (qw(s1 s2)) {
	my $n = PostgreSQL::Test::Cluster->new($name);
	$n->init;
	$n->append_conf('postgresql.conf', "edgeshard.node_name = '$name'");
	$n->start;
	$node{$name} = $n;
}

# The same map on both shards: each registers both, in the same order.
for my $n (values %node) {
	$n->safe_psql('postgres', 'CREATE EXTENSION edgeshard');
	for my $name (qw(s1 s2)) {
		my $conninfo = $node{$name}->connstr('postgres') =~ s/'/''/gr;
		$n->safe_psql('postgres', "SELECT edgeshard.add_shard('$name', '$conninfo')");
	}
	$n->safe_psql('postgres', q{
		CREATE TABLE orders (tenant_id bigint, order_id int, amount numeric, PRIMARY KEY (tenant_id, order_id));
		SELECT edgeshard.distribute_table('orders', 'tenant_id');
	});
}

my $routing_sql = "SELECT string_agg(edgeshard.shard_for(g), ',' ORDER BY g) FROM generate_series(1, $tenants) g";
my $routing_s1 = $node{s1}->safe_psql('postgres', $routing_sql);
is($node{s2}->safe_psql('postgres', $routing_sql), $routing_s1, 'both shards route every tenant the same way');
my @owner = (undef, split(/,/, $routing_s1));
my %count;
$count{$_}++ for @owner[1 .. $tenants];
ok($count{s1} > $tenants * 0.3 && $count{s2} > $tenants * 0.3,
	"tenants spread over both shards (s1 $count{s1}, s2 $count{s2})");
is($node{s1}->safe_psql('postgres', 'SELECT edgeshard.current_epoch()'),
	$node{s2}->safe_psql('postgres', 'SELECT edgeshard.current_epoch()'), 'same epoch on both');

# Route each tenant's writes (3 orders each) to its owner: all accepted.
for my $name (qw(s1 s2)) {
	my @mine = grep { $owner[$_] eq $name } 1 .. $tenants;
	my $values = join(',', map { my $t = $_; map { "($t, $_, $_ * 10)" } 1 .. 3 } @mine);
	$node{$name}->safe_psql('postgres', "INSERT INTO orders VALUES $values");
	is($node{$name}->safe_psql('postgres', 'SELECT count(DISTINCT tenant_id) FROM orders'),
		scalar(@mine), "$name holds exactly its own tenants");
	is($node{$name}->safe_psql('postgres',
			"SELECT count(*) FROM orders WHERE edgeshard.shard_for(tenant_id) <> '$name'"),
		0, "no row on $name belongs to another shard");
}

# The same writes sent to the wrong shard are refused, one statement at a time, naming the owner.
my ($refused, $named_owner) = (0, 0);
for my $t (1 .. 40) {
	my $wrong = $owner[$t] eq 's1' ? 's2' : 's1';
	my ($ret, $stdout, $stderr) = $node{$wrong}->psql('postgres',
		"\\set VERBOSITY verbose\nINSERT INTO orders VALUES ($t, 99, 1)");
	$refused++ if $ret != 0 && $stderr =~ /ERROR:\s+SH001:/;
	$named_owner++ if $stderr =~ /belongs to shard "$owner[$t]", not to this node "$wrong"/;
}
is($refused, 40, 'every wrong-shard INSERT refused with SH001');
is($named_owner, 40, 'every refusal names the owner and this node');
for my $stmt ("UPDATE orders SET amount = 0", "DELETE FROM orders") {
	my $t = (grep { $owner[$_] eq 's2' } 1 .. $tenants)[0];
	my ($ret, $stdout, $stderr) = $node{s1}->psql('postgres',
		"\\set VERBOSITY verbose\nSET edgeshard.bypass_write_guard = on;\n"
		  . "INSERT INTO orders VALUES ($t, 1000, 1);\nRESET edgeshard.bypass_write_guard;\n"
		  . "$stmt WHERE tenant_id = $t");
	like($stderr, qr/SH001/, "$stmt of a foreign tenant refused");
	$node{s1}->safe_psql('postgres',
		"SET edgeshard.bypass_write_guard = on; DELETE FROM orders WHERE tenant_id = $t");
}

# A map change made by one session reaches a session that is already running, at its next
# statement: session A reads tenant 1's owner, sleeps, reads again while session B moves it.
my $t1 = 1;
my $other = $owner[$t1] eq 's1' ? 's2' : 's1';
my ($out, $err) = ('', '');
my $session = IPC::Run::start(
	[ 'psql', '-XAtq', '-d', $node{s1}->connstr('postgres'),
	  '-c', "SELECT edgeshard.shard_for($t1)", '-c', 'SELECT pg_sleep(2)',
	  '-c', "SELECT edgeshard.shard_for($t1)" ],
	'>', \$out, '2>', \$err);
sleep 1;
$node{s1}->safe_psql('postgres', "SELECT edgeshard.place_tenant($t1, '$other')");
$session->finish;
my @seen = grep { $_ ne '' } split(/\n/, $out);
is_deeply([ $seen[0], $seen[-1] ], [ $owner[$t1], $other ], 'a running session sees the map change at its next statement');
$node{s1}->safe_psql('postgres', "SELECT edgeshard.unplace_tenant($t1)");

# Concurrent map changes serialise: two sessions giving the same dedicated shard to two pro
# tenants at once cannot both win.
$node{s1}->safe_psql('postgres', "SELECT edgeshard.add_shard('d1', 'host=127.0.0.1 port=1', weight => 0)");
my ($out_a, $err_a, $out_b, $err_b) = ('', '', '', '');
my $a = IPC::Run::start(
	[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $node{s1}->connstr('postgres'),
	  '-c', "BEGIN; SELECT edgeshard.set_tier('pro-a', 'pro', 'd1'); SELECT pg_sleep(1); COMMIT;" ],
	'>', \$out_a, '2>', \$err_a);
# B starts once A holds the map lock.
$node{s1}->poll_query_until('postgres', q{
	SELECT count(*) > 0 FROM pg_locks WHERE relation = 'edgeshard.map_epoch'::regclass
	   AND mode = 'ShareRowExclusiveLock' AND granted AND pid <> pg_backend_pid()})
  or die 'session A never took the map lock';
my $b = IPC::Run::run(
	[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-v', 'VERBOSITY=verbose', '-d', $node{s1}->connstr('postgres'),
	  '-c', "\\set VERBOSITY verbose", '-c', "SELECT edgeshard.set_tier('pro-b', 'pro', 'd1')" ],
	'>', \$out_b, '2>', \$err_b);
$a->finish;
like($err_b, qr/55006.*dedicated to pro tenant "pro-a"/, 'the second concurrent set_tier waits and is refused');
is($node{s1}->safe_psql('postgres', "SELECT string_agg(tenant_id, ',') FROM edgeshard.tenants WHERE tier = 'pro'"),
	'pro-a', 'one pro tenant on the dedicated shard');
$node{s1}->safe_psql('postgres', "SELECT edgeshard.set_tier('pro-a', 'free'); SELECT edgeshard.remove_shard('d1')");

# Adding a shard to the map (on both) moves only the tenants the new shard takes.
for my $n (values %node) {
	$n->safe_psql('postgres', "SELECT edgeshard.add_shard('s3', 'host=127.0.0.1 port=1')");
}
my @after = (undef, split(/,/, $node{s2}->safe_psql('postgres', $routing_sql)));
my ($moved, $moved_elsewhere) = (0, 0);
for my $t (1 .. $tenants) {
	next if $after[$t] eq $owner[$t];
	$moved++;
	$moved_elsewhere++ if $after[$t] ne 's3';
}
ok($moved > $tenants * 0.2 && $moved < $tenants * 0.5, "adding s3 moved $moved of $tenants tenants");
is($moved_elsewhere, 0, 'every moved tenant moved to the new shard');
is($node{s1}->safe_psql('postgres', $routing_sql), join(',', @after[1 .. $tenants]),
	'both shards agree after the change');

# pg_dump carries the map: restore s1's database into a fresh one and compare.
my $dump = $node{s1}->basedir . '/s1.dump';
$node{s1}->safe_psql('postgres', "SELECT edgeshard.set_tier('big', 'free', 's2')");
$node{s1}->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node{s1}->connstr('postgres') ], 'pg_dump');
$node{s1}->safe_psql('postgres', 'CREATE DATABASE restored');
$node{s1}->command_ok([ 'pg_restore', '-d', $node{s1}->connstr('restored'), $dump ], 'pg_restore');
my $map_sql = 'SELECT string_agg(format(\'%s:%s:%s\', name, weight, ring_points), \' \' ORDER BY name) FROM edgeshard.shard_map';
is($node{s1}->safe_psql('restored', $map_sql), $node{s1}->safe_psql('postgres', $map_sql), 'shard map restored');
# The epoch never goes backwards (restoring the other catalog tables may bump it further), so a
# router that saw the dumped map never takes the restored one for older.
my $epoch_before = $node{s1}->safe_psql('postgres', 'SELECT edgeshard.current_epoch()');
my $epoch_after = $node{s1}->safe_psql('restored', 'SELECT edgeshard.current_epoch()');
cmp_ok($epoch_after, '>=', $epoch_before, "map epoch restored ($epoch_before -> $epoch_after)");
is($node{s1}->safe_psql('restored', "SELECT edgeshard.shard_for('big')"), 's2', 'explicit placement restored');
is($node{s1}->safe_psql('restored', 'SELECT relid::text FROM edgeshard.distributed_tables'), 'orders',
	'distributed tables restored');
is($node{s1}->safe_psql('restored', $routing_sql), $node{s1}->safe_psql('postgres', $routing_sql),
	'routing identical after restore');
my ($ret, $o, $e) = $node{s1}->psql('restored',
	"\\set VERBOSITY verbose\nINSERT INTO orders VALUES ((SELECT min(g) FROM generate_series(1, 100) g WHERE edgeshard.shard_for(g) <> 's1'), 1, 1)");
like($e, qr/SH001/, 'write guard restored with the table');

$_->stop for values %node;
done_testing();
