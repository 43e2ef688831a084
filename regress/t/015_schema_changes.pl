# Edge replicas stay equal to the primary through schema changes (issue 12): on two shard
# primaries, each followed through its relay, while pgbench moves money between a tenant's
# accounts, the distributed table is altered, one shard after the other, every way an operator does
# it — ADD COLUMN with a constant default (a missing value: old rows read it), a transaction that
# changes the table before and after altering it, RENAME COLUMN, DROP COLUMN, ADD COLUMN with a
# volatile default and ALTER COLUMN ... TYPE int -> bigint (both rewrite the table: the edge copies
# the affected tenants again beside their published replicas and switches readers over at once),
# a new distributed table mid-stream, and an ALTER with no row change after it — and the edge is
# killed with SIGKILL right after a rewrite, mid-resync. Readers check every tenant's money sum
# throughout. Checked afterwards, row for row as row_to_json renders them: an edge that followed
# every change, and an edge built after them by an initial copy; verify is clean; the resyncs
# happened and completed.
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

my $token = 'schema-test-token';
$ENV{EDGESHARD_RELAY_TOKEN} = $token;
my $ntenants = 30;
my $naccounts = 10;
my $seed = test_seed('015_schema_changes');

my @shards = qw(s1 s2);
my $nodes = start_shard_primaries(\@shards, q{
	CREATE TABLE accounts (tenant_id bigint, id int, balance int NOT NULL, note text,
		PRIMARY KEY (tenant_id, id));
	CREATE TABLE mine (i int PRIMARY KEY, tenant bigint NOT NULL);
}, ['accounts']);
my $split = tenants_by_shard($nodes, $ntenants);
my %owner = %{ $split->{owner} };
my %mine = %{ $split->{mine} };
my @owner_name = @{ $split->{owner_name} };
ok(@{ $mine{s1} } >= 5 && @{ $mine{s2} } >= 5, 'tenants on both shards');
my %conn = map { $_ => $nodes->{$_}->connstr('postgres') } @shards;
my %relay;
for my $s (@shards)
{
	$nodes->{$s}->safe_psql('postgres', qq{
		INSERT INTO accounts SELECT tenant, a, 1000, 'account ' || a FROM mine, generate_series(1, $naccounts) a;
	});
	$relay{$s} = start_relay(name => "schema_$s", upstream => $conn{$s}, token => $token, slot => "relay_schema_$s");
	wait_until(sub { (metric($relay{$s}, 'edgeshard_relay_upstream_connected') // 0) == 1 }, "relay of $s upstream");
}

# Edge A: copies the tenants, then follows every change below.
my $edge_a = apply_daemon(tag => 'before', shards => [ map { [ $_, $relay{$_} ] } @shards ], primaries => \%conn);
launch_apply($edge_a, 1);
ok(wait_apply_caught_up($edge_a, $nodes, 'edge A to copy and catch up'), 'edge A caught up');

# --- concurrent transfers, on both shards ----------------------------------------------------------
my $script = test_dir() . '/transfer.sql';
open my $bf, '>', $script or die "cannot write $script: $!";
print $bf qq{\\set i random(1, :n)
\\set a random(1, $naccounts)
\\set b random(1, $naccounts)
\\set amount random(1, 50)
SELECT tenant AS t FROM mine WHERE i = :i \\gset
BEGIN;
UPDATE accounts SET balance = balance - :amount WHERE tenant_id = :t AND id = :a;
UPDATE accounts SET balance = balance + :amount WHERE tenant_id = :t AND id = :b;
COMMIT;
};
close $bf;
# Tenant 1 gets rows added by the DDL transaction: readers check the others' constant sums.
my %sum = map { $_ => 1000 * $naccounts } 2 .. $ntenants;
my $readers = start_readers(data_dir => $edge_a->{data_dir}, table => 'public.accounts', column => 'balance',
	rows => $naccounts, sum => \%sum, tenants => [ 2 .. $ntenants ], n => 2, seed => $seed);
my $bench = start_shard_pgbench(conninfo => \%conn, mine => \%mine, script => $script, seconds => 25, clients => 1);

# --- the schema changes, while the transfers go on ----------------------------------------------------
my $owner1 = $owner_name[1];
my @ddl = (
	'ALTER TABLE accounts ADD COLUMN plan text DEFAULT \'free\'',
	# Rows changed before and after the ALTER in one transaction: each decoded with its columns
	# (on tenant 1's shard; the other shard alters alone).
	{ $owner1 => q{BEGIN;
	  UPDATE accounts SET note = 'before the change' WHERE tenant_id = 1 AND id = 1;
	  ALTER TABLE accounts ADD COLUMN region text DEFAULT 'eu';
	  UPDATE accounts SET note = 'after the change', region = 'us' WHERE tenant_id = 1 AND id = 2;
	  INSERT INTO accounts (tenant_id, id, balance) VALUES (1, 100, 0);
	  COMMIT}, other => q{ALTER TABLE accounts ADD COLUMN region text DEFAULT 'eu'} },
	'ALTER TABLE accounts RENAME COLUMN plan TO tier',
	'ALTER TABLE accounts DROP COLUMN note',
	'ALTER TABLE accounts ADD COLUMN score int DEFAULT (random() * 1000)::int',    # rewrite
	'ALTER TABLE accounts ALTER COLUMN balance TYPE bigint',                        # rewrite
	qq{CREATE TABLE notes (tenant_id bigint, id int, body text, PRIMARY KEY (tenant_id, id));
	   SELECT edgeshard.distribute_table('notes', 'tenant_id');
	   INSERT INTO notes SELECT tenant, g, 'note ' || g FROM mine, generate_series(1, 3) g},
	q{ALTER TABLE notes ADD COLUMN pinned boolean DEFAULT false},                   # no row changes after it
);
for my $i (0 .. $#ddl)
{
	usleep(700_000);
	# One shard after the other, as a rolling change is made: the edge follows each shard's own
	# columns (the other shard's tenants keep theirs until their shard changes).
	for my $s (@shards)
	{
		my $sql = ref $ddl[$i] ? ($ddl[$i]{$s} // $ddl[$i]{other}) : $ddl[$i];
		$nodes->{$s}->safe_psql('postgres', $sql);
		usleep(300_000);
	}
	if ($i == 5)
	{
		# SIGKILL right after the type change: the resync it started is cut short.
		usleep(100_000);
		kill_apply($edge_a);
		launch_apply($edge_a, 0);
	}
}
finish_shard_pgbench($bench, 'transfers across the schema changes', 100);

wait_apply_connected($edge_a);
ok(wait_apply_caught_up($edge_a, $nodes, 'edge A to catch up after the changes'), 'edge A caught up after the changes');
ok(wait_until(sub {
			return (apply_metric($edge_a, 'edgeshard_apply_tenants_copying') // 1) == 0
			  && (apply_metric($edge_a, 'edgeshard_apply_resyncs_done_total') // 0) >= 1;
		}, 'the resyncs to complete'), 'resyncs completed');
my $r = stop_readers($readers);
cmp_ok($r->{reads}, '>', 0, "readers read the tenants throughout ($r->{reads} reads)");
is($r->{violations}, 0, 'no read saw a broken money sum or a half-applied state') or diag($r->{examples});
is($r->{errors}, 0, 'readers met no error') or diag($r->{examples});

my @tables = ([ 'accounts', 'id' ], [ 'notes', 'id' ]);
for my $s (@shards)
{
	is($nodes->{$s}->safe_psql('postgres', q{SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute
		WHERE attrelid = 'accounts'::regclass AND attnum > 0 AND NOT attisdropped}),
		'tenant_id,id,balance,tier,region,score', "$s has the columns the changes made");
}
compare_replicas(data_dir => $edge_a->{data_dir}, tenants => [ 1 .. $ntenants ], owner => \%owner,
	tables => \@tables, what => 'edge A, which followed every change');
verify_replicas($edge_a->{data_dir}, $ntenants, 'edge A');
my $log_a = slurp_file($edge_a->{log});
like($log_a, qr/event=table_rewritten .*table=public\.accounts/, 'the rewrites were seen as rewrites');
like($log_a, qr/event=tenant_resynced /, 'tenants were resynchronised and adopted');
like($log_a, qr/event=relation_changed /, 'new descriptions reached the tenants');
unlike($log_a, qr/event=tenant_broken /, 'no tenant broke');

# Edge B: built after every change, by an initial copy and the stream.
my $edge_b = apply_daemon(tag => 'after', name => 'edge2', shards => [ map { [ $_, $relay{$_} ] } @shards ],
	primaries => \%conn);
launch_apply($edge_b, 1);
ok(wait_apply_caught_up($edge_b, $nodes, 'edge B to copy and catch up'), 'edge B caught up');
ok(wait_until(sub { (apply_metric($edge_b, 'edgeshard_apply_tenants_copying') // 1) == 0 }, 'edge B to publish'),
	'edge B published its copy');
compare_replicas(data_dir => $edge_b->{data_dir}, tenants => [ 1 .. $ntenants ], owner => \%owner,
	tables => \@tables, what => 'edge B, built after the changes');
verify_replicas($edge_b->{data_dir}, $ntenants, 'edge B');

# One more change after both edges are current, then both equal the primary again.
$nodes->{$_}->safe_psql('postgres', q{
	ALTER TABLE accounts DROP COLUMN region;
	UPDATE accounts SET tier = 'pro' WHERE tenant_id IN (3, 4);
}) for @shards;
for my $e ($edge_a, $edge_b)
{
	ok(wait_apply_caught_up($e, $nodes, "$e->{name} to catch up with the last change"), "$e->{name} caught up");
	compare_replicas(data_dir => $e->{data_dir}, tenants => [ 1 .. $ntenants ], owner => \%owner,
		tables => \@tables, what => "$e->{name} after a last DROP COLUMN");
}
is(stop_apply($edge_a), 0, 'edge A stops cleanly');
is(stop_apply($edge_b), 0, 'edge B stops cleanly');
done_testing();
