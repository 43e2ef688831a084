# edgeshard-relay against a real primary: one relay (A) holds the only slot and serves 20
# subscribers with different tenant filters — 10 connected before the workload (served live from
# the shared window) and 10 started afterwards from a position before it (served from the log on
# disk) — plus a second relay (B) subscribed to A with one subscriber of its own (the tree
# primary -> A -> B -> subscriber). Every subscriber must receive exactly the frames of its
# tenants that a direct slot of the same plugin sends, in the same order: no gap, no duplicate.
# The primary's edgeshard.edge_status view shows what A reports about its subscribers.
use strict;
use warnings;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib $ENV{TESTDIR} ? "$ENV{TESTDIR}/t" : 't';
use RelayHarness;

my $token = 'fanout-test-token';
$ENV{EDGESHARD_RELAY_TOKEN} = $token;

my ($node, $conn) = start_primary();
# The reference: a slot of its own, read directly after the workload.
$node->safe_psql('postgres', "SELECT pg_create_logical_replication_slot('es_ref', 'edgeshard')");

my $ra = start_relay(name => 'a', upstream => $conn, token => $token, slot => 'relay_a');
wait_until(sub { (metric($ra, 'edgeshard_relay_upstream_connected') // 0) == 1 }, 'relay a upstream');
my $rb = start_relay(name => 'b', upstream_relay => "127.0.0.1:$ra->{port}", upstream_token => $token,
	token => $token, status_conninfo => 'off');
wait_until(sub { (metric($rb, 'edgeshard_relay_upstream_connected') // 0) == 1 }, 'relay b upstream');

# Tenant filters: every 5th subscriber takes every tenant, the others three tenants each.
my %filter;
for my $i (1 .. 20)
{
	$filter{"sub$i"} = $i % 5 == 0 ? undef : { map { (($i * 7 + $_ * 11) % 30) + 1 => 1 } 0 .. 2 };
}
sub tenants_of { my $f = $filter{ $_[0] }; return $f ? [ sort { $a <=> $b } keys %$f ] : [] }

my %live;
for my $i (1 .. 10)
{
	$live{"sub$i"} = start_subscriber(name => "sub$i", relay => $ra, tenants => tenants_of("sub$i"));
}
$live{via_b} = start_subscriber(name => 'via_b', relay => $rb);
wait_until(sub { (metric($ra, 'edgeshard_relay_subscribers_connected') // 0) >= 11 }, '10 subscribers + relay b on a');
wait_until(sub { (metric($rb, 'edgeshard_relay_subscribers_connected') // 0) >= 1 }, 'a subscriber on b');

# --- the workload ---------------------------------------------------------------------------
my $from = lsn_num($node->safe_psql('postgres', 'SELECT pg_current_wal_flush_lsn()'));
my $sql = '';
for my $t (1 .. 30)
{
	$sql .= "INSERT INTO items SELECT $t, g, 'v' || g FROM generate_series(1, 20) g;\n";
}
for my $k (1 .. 150)
{
	my ($t1, $t2) = (($k * 13) % 30 + 1, ($k * 17) % 30 + 1);
	$sql .= "BEGIN; UPDATE items SET v = 'u$k' WHERE tenant_id = $t1 AND id = " . ($k % 20 + 1) . ";\n";
	$sql .= "INSERT INTO items VALUES ($t2, " . (100 + $k) . ", repeat('x', " . ($k * 7) . "));\n";
	$sql .= "DELETE FROM items WHERE tenant_id = $t1 AND id = " . (($k + 5) % 20 + 1) . "; COMMIT;\n";
}
# One large transaction over five tenants: continuation frames.
$sql .= "INSERT INTO items SELECT (g % 5) + 1, 1000 + g, md5(g::text) FROM generate_series(1, 30000) g;\n";
$node->safe_psql('postgres', $sql);
my $end = $node->safe_psql('postgres', 'SELECT pg_current_wal_flush_lsn()');
my $from_text = sprintf('%X/%X', int($from / 4294967296), $from % 4294967296);

# The other ten subscribers start now, from before the workload: the relay's log serves them.
my %late;
for my $i (11 .. 20)
{
	$late{"sub$i"} = start_subscriber(name => "sub$i", relay => $ra, tenants => tenants_of("sub$i"),
		start => $from_text, endpos => $end);
}

# The reference stream, straight from its own slot.
my ($ref_out, $ref_err) = ('', '');
IPC::Run::run([ 'edgeshard-dump', '--dbname', $conn, '--slot', 'es_ref', '--endpos', $end,
		'--format', 'frames', '--option', 'compression=lz4', '--option', 'frame_bytes=65536' ],
	'>', \$ref_out, '2>', \$ref_err, IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
is($?, 0, 'the reference slot streams to endpos') or diag($ref_err);
my $reference = frame_lines($ref_out);
my $all_ref = tenant_lines($reference, $from, undef);
cmp_ok(scalar(@$all_ref), '>', 300, 'the reference holds the workload (' . scalar(@$all_ref) . ' tenant frames)');

# Live subscribers: wait until each acked the end, then stop them.
my $end_num = lsn_num($end);
for my $name (sort keys %live)
{
	my $relay = $name eq 'via_b' ? $rb : $ra;
	wait_until(sub { (metric($relay, 'edgeshard_relay_subscriber_acked_lsn', $name) // 0) >= $end_num },
		"$name to ack the end of the workload");
	stop_subscriber($live{$name}, 1);
}
for my $name (sort keys %late)
{
	is(stop_subscriber($late{$name}), 0, "$name (from the log) stops at endpos")
	  or diag(${ $late{$name}{err} });
}

my %all = (%live, %late);
for my $name (sort keys %all)
{
	my $got = tenant_lines(frame_lines(${ $all{$name}{out} }), $from, $filter{$name});
	my $want = tenant_lines($reference, $from, $filter{$name});
	is_deeply($got, $want, "$name receives exactly its tenants' frames, in order ("
		  . scalar(@$want) . ' frames)')
	  or diag("stderr: ${ $all{$name}{err} }");
	my $many = grep { $_->[1] eq '*' } @{ frame_lines(${ $all{$name}{out} }) };
	cmp_ok($many, '>', 0, "$name receives the many-tenants frames (RELATION)");
}

# What relay A reports to the primary.
wait_until(sub {
	$node->safe_psql('postgres', "SELECT count(*) FROM edgeshard.edge_status WHERE relay = 'a'") >= 21 },
	'relay a reports its subscribers in edgeshard.edge_status');
wait_until(sub {
	$node->safe_psql('postgres',
		"SELECT acked_lsn >= '$end' FROM edgeshard.edge_status WHERE relay = 'a' AND subscriber = 'sub1'") eq 't' },
	'edge_status to show sub1 acked the end of the workload');
wait_until(sub {
	$node->safe_psql('postgres',
		"SELECT NOT connected FROM edgeshard.edge_status WHERE relay = 'a' AND subscriber = 'sub12'") eq 't' },
	'edge_status to show sub12 (finished) as disconnected, still registered');
# The primary decoded the workload once: only the reference slot and relay A's slot exist.
is($node->safe_psql('postgres', 'SELECT count(*) FROM pg_replication_slots'), '2',
	'two slots on the primary (the reference and relay a), whatever the number of subscribers');

is(stop_relay($rb), 0, 'relay b stops cleanly on SIGTERM');
is(stop_relay($ra), 0, 'relay a stops cleanly on SIGTERM');
unlike(relay_log($ra), qr/level=error/, 'relay a logged no error');
$node->stop;
done_testing();
