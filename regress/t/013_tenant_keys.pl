# Any valid tenant key works at the edge (issue 12): a distributed table whose tenant column is
# text, with keys of 1, 63, 255, 300 and 5,000 bytes holding '/', spaces, newlines, non-ASCII
# UTF-8, a leading '.', commas and '%' (two pairs of long keys share all but their last byte).
# pgbench inserts, updates and deletes their rows while a relay and edgeshard-apply stream them
# and the daemon is killed with SIGKILL and restarted; then a second edge is started after the
# rows exist with `primary` set (the initial-copy path), and a third serves a `tenants` list of
# percent-escaped keys. Checked: every edge equals the primary row for row, verify is clean,
# get and ls work for the long keys (a key printed escaped, taken back with %=), directory names
# stay bounded and distinct, no tenant broke and no daemon died.
use strict;
use warnings;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use lib $ENV{TESTDIR} ? "$ENV{TESTDIR}/t" : 't';
use RelayHarness;
use ReplicaCheck;
use ReplicaReader;

my $token = 'keys-test-token';
$ENV{EDGESHARD_RELAY_TOKEN} = $token;
my $kills = $ENV{ES_LONG} ? 20 : 4;
my $rows = 30;    # ids 1..30 to start with; pgbench deletes and inserts ids 16..30
my $seed = test_seed('013_tenant_keys');
my $rng = ReplicaReader::Rng->new($seed);

# A key of $n bytes: a 10-byte unit of 'é', '/', ' ', 'a', a newline, 'b' and '€' repeated (valid
# UTF-8, compressible: a 5,000-byte key must fit the primary key's btree after compression),
# padded with '.', then $tail.
my $unit = "\xC3\xA9/ a\nb\xE2\x82\xAC";
sub key_of
{
	my ($n, $tail) = @_;
	my $body = $unit x int(($n - length $tail) / length $unit);
	return $body . ('.' x ($n - length($tail) - length $body)) . $tail;
}
my @keys = ('/', key_of(63, ''), key_of(255, ''), key_of(300, 'A'), key_of(300, 'B'), key_of(5000, 'A'),
	key_of(5000, 'B'), '.lead', 'a,b%20c', ' both ends ', '42');
is(join(',', map { length } @keys), '1,63,255,300,300,5000,5000,5,7,11,2', 'the keys have the lengths asked for');
my $nkeys = scalar @keys;

# SQL literal of a key.
sub lit { my ($k) = @_; return "'" . ($k =~ s/'/''/gr) . "'"; }

my $nodes = start_shard_primaries(['s1'], q{
	CREATE TABLE docs (tenant_id text, id int, body text NOT NULL, n int NOT NULL DEFAULT 0,
		PRIMARY KEY (tenant_id, id));
	CREATE TABLE keys (i int PRIMARY KEY, k text NOT NULL);
}, ['docs']);
my $node = $nodes->{s1};
my $conn = $node->connstr('postgres');
$node->safe_psql('postgres',
	'INSERT INTO keys VALUES ' . join(', ', map { '(' . ($_ + 1) . ', ' . lit($keys[$_]) . ')' } 0 .. $#keys));
is($node->safe_psql('postgres', 'SELECT string_agg(octet_length(k)::text, \',\' ORDER BY i) FROM keys'),
	join(',', map { length } @keys), 'the primary holds the keys byte for byte');
my %owner = map { $_ => $node } @keys;

my $relay = start_relay(name => 'keys_r1', upstream => $conn, token => $token, slot => 'relay_keys');
wait_until(sub { (metric($relay, 'edgeshard_relay_upstream_connected') // 0) == 1 }, 'relay upstream');

# --- edge A: built from the stream alone, killed and restarted while the rows change -------------------
my $edge_a = apply_daemon(tag => 'stream', shards => [ [ 's1', $relay ] ]);
launch_apply($edge_a, 1);
$node->safe_psql('postgres',
	"INSERT INTO docs SELECT k, g, 'first ' || g FROM keys, generate_series(1, $rows) g");

my $script = test_dir() . '/keys.sql';
open my $bf, '>', $script or die "cannot write $script: $!";
print $bf qq{\\set i random(1, $nkeys)
\\set a random(1, $rows)
\\set b random(16, $rows)
BEGIN;
UPDATE docs SET n = n + 1, body = md5(random()::text) WHERE tenant_id = (SELECT k FROM keys WHERE i = :i) AND id = :a;
DELETE FROM docs WHERE tenant_id = (SELECT k FROM keys WHERE i = :i) AND id = :b;
INSERT INTO docs SELECT k, :a + 15, 'again ' || :a, 0 FROM keys WHERE i = :i AND :a <= 15
  ON CONFLICT (tenant_id, id) DO UPDATE SET n = docs.n + 1, body = 'updated';
COMMIT;
};
close $bf;

# Runs pgbench for $secs seconds in the background.
sub start_pgbench
{
	my ($secs, $name) = @_;
	my %w = (log => "$PostgreSQL::Test::Utils::log_path/013_pgbench_$name.log");
	$w{handle} = IPC::Run::start([ 'pgbench', '-n', '-c', '2', '-j', '2', '-T', $secs, '-f', $script, $conn ],
		'>', $w{log}, '2>&1');
	kill_at_exit($w{handle});
	return \%w;
}

# Waits for pgbench; checks it committed transactions without error.
sub finish_pgbench
{
	my ($w, $what) = @_;
	$w->{handle}->finish;
	my $out = slurp_file($w->{log});
	my ($tx) = $out =~ /number of transactions actually processed: (\d+)/;
	ok($? == 0 && ($tx // 0) > 50, "$what: pgbench committed " . ($tx // 0) . ' transactions') or diag($out);
}

my $bench = start_pgbench(3 + $kills, 'stream');
for my $k (1 .. $kills)
{
	usleep(300_000 + $rng->below(900_000));
	kill_apply($edge_a);
	launch_apply($edge_a, 0);
}
finish_pgbench($bench, 'while edge A was killed');
ok(wait_apply_connected($edge_a), "edge A is back after $kills kill -9");
ok(wait_apply_caught_up($edge_a, $nodes, 'edge A to catch up'), 'edge A caught up');
my @tables = ([ 'docs', 'id' ]);
compare_replicas(data_dir => $edge_a->{data_dir}, tenants => \@keys, owner => \%owner, tables => \@tables,
	what => "edge A after $kills kill -9");
verify_replicas($edge_a->{data_dir}, $nkeys, 'edge A');

# --- names on disk, the CLI -----------------------------------------------------------------------
opendir my $dh, "$edge_a->{data_dir}/tenants" or die "cannot list tenants: $!";
my @names = grep { !/^\.\.?$/ } readdir $dh;
closedir $dh;
is(scalar(@names), $nkeys, 'one directory per key');
is(scalar(grep { length($_) > 120 } @names), 0, 'no directory name is longer than 120 bytes')
  or diag(join("\n", map { length } @names));
is(scalar(grep { /~[0-9a-f]{16}$/ } @names), 6, 'the six keys whose escaped form passes 120 bytes have hashed names');

my ($st, $out, $err) = replica_cli('ls', $edge_a->{data_dir});
is($st, 0, 'ls succeeds') or diag($err);
my @ls = split /\n/, $out;
is(scalar(@ls), $nkeys, 'ls prints one line per tenant (keys with newlines are escaped)');
my ($k5000) = grep { length == 5000 && /A$/ } @keys;
my $escaped = $k5000 =~ s/([\x00-\x20,%\x7F])/sprintf('%%%02X', ord $1)/ger;
ok((grep { index($_, $escaped) == 0 } @ls), 'ls shows the 5,000-byte key escaped');
my $want = $node->safe_psql('postgres', 'SELECT row_to_json(x) FROM docs x WHERE tenant_id = '
	  . lit($k5000) . ' AND id = 1');
($st, $out, $err) = replica_cli('get', $edge_a->{data_dir}, $k5000, 'docs', $k5000, '1');
is($st, 0, 'get of a row of the 5,000-byte key') or diag($err);
chomp $out;
is($out, $want, 'get returns the primary row');
($st, $out, $err) = replica_cli('get', $edge_a->{data_dir}, "%=$escaped", 'docs', $k5000, '1');
chomp $out;
is($out, $want, 'the key as ls prints it works with %=');
($st, $out, $err) = replica_cli('stats', $edge_a->{data_dir}, key_of(300, 'B'));
is($st, 0, 'stats of a 300-byte key') or diag($err);

# --- edge B: started after the rows exist, copied from the primary --------------------------------
my $edge_b = apply_daemon(tag => 'copy', name => 'edge2', shards => [ [ 's1', $relay ] ],
	primaries => { s1 => $conn });
launch_apply($edge_b, 1);
# --- edge C: a tenants list of escaped keys (commas, blanks, newlines) -----------------------------
my @listed = ($k5000, 'a,b%20c', ' both ends ', key_of(63, ''));
my $list = join(',', map { s/([\x00-\x20,%\x7F])/sprintf('%%%02X', ord $1)/ger } @listed);
my $edge_c = apply_daemon(tag => 'listed', name => 'edge3', shards => [ [ 's1', $relay ] ],
	primaries => { s1 => $conn }, tenants => $list);
launch_apply($edge_c, 1);
$bench = start_pgbench(4, 'copy');
finish_pgbench($bench, 'while edges B and C copied');
for my $e ([ $edge_b, 'edge B (initial copy)', \@keys ], [ $edge_c, 'edge C (tenants list)', \@listed ])
{
	my ($edge, $what, $tenants) = @$e;
	ok(wait_apply_caught_up($edge, $nodes, "$what to catch up"), "$what caught up");
	ok(wait_until(sub { (apply_metric($edge, 'edgeshard_apply_tenants_copying') // 1) == 0 }, 'publication'),
		"$what: the copies are published");
	compare_replicas(data_dir => $edge->{data_dir}, tenants => $tenants, owner => \%owner, tables => \@tables,
		what => $what);
	verify_replicas($edge->{data_dir}, scalar(@$tenants), $what);
}
like(slurp_file($edge_b->{log}), qr/event=copy_done /, 'edge B copied the tenants from the primary');
ok(wait_apply_caught_up($edge_a, $nodes, 'edge A to catch up'), 'edge A caught up again');
compare_replicas(data_dir => $edge_a->{data_dir}, tenants => \@keys, owner => \%owner, tables => \@tables,
	what => 'edge A at the end');

# --- nothing broke -----------------------------------------------------------------------------------
for my $edge ($edge_a, $edge_b, $edge_c)
{
	is(apply_metric($edge, 'edgeshard_apply_broken_tenants') // 0, 0, "$edge->{name}: no tenant broke");
	is(stop_apply($edge), 0, "$edge->{name} stops cleanly");
	my $log = slurp_file($edge->{log});
	unlike($log, qr/terminate called|filesystem_error|event=(tenant_broken|apply_failed|tenant_unreadable) /,
		"$edge->{name}: no exception, broken tenant or unreadable manifest in the log");
}
stop_relay($relay);
$node->stop;
done_testing();
