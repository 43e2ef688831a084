# edgeshard-apply streaming straight from the shard primaries, without a relay: each shard is
# `NAME=primary`, so the daemon holds its own logical replication slot (plugin edgeshard) on each
# primary, copies the tenants written before it started, and streams on top. pgbench moves money
# between a tenant's accounts on both shards while the daemon is killed with SIGKILL and
# restarted; readers check every tenant's sum throughout. Checked: every replica equals its
# primary row for row, verify is clean, readers never see a broken sum; the slots exist with the
# plugin and confirm what the edge made durable; an idle stream outlives wal_sender_timeout
# (status updates); a slot dropped under an edge that already applied the shard is refused with
# a message saying what to do, and a new data_dir recovers by copying again.
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

delete $ENV{EDGESHARD_RELAY_TOKEN};    # no relay: no token needed
my $ntenants = 60;
my $naccounts = 10;
my $kills = $ENV{ES_LONG} ? 40 : 8;
my $seed = test_seed('011_apply_from_primary');
my $rng = ReplicaReader::Rng->new($seed);

my @shards = qw(s1 s2);
my $nodes = start_shard_primaries(\@shards, q{
	CREATE TABLE accounts (tenant_id bigint, id int, balance bigint NOT NULL, moves bigint NOT NULL DEFAULT 0,
		PRIMARY KEY (tenant_id, id));
	CREATE TABLE mine (i int PRIMARY KEY, tenant bigint NOT NULL);
}, ['accounts']);
my $split = tenants_by_shard($nodes, $ntenants);
my %owner = %{ $split->{owner} };
my %mine = %{ $split->{mine} };
for my $s (@shards)
{
	# A short wal_sender_timeout: the idle stream below must keep itself alive with status updates.
	$nodes->{$s}->safe_psql('postgres', qq{
		INSERT INTO accounts SELECT tenant, a, 1000 FROM mine, generate_series(1, $naccounts) a;
		ALTER SYSTEM SET wal_sender_timeout = '2s';
		SELECT pg_reload_conf();
	});
}
ok(@{ $mine{s1} } >= 10 && @{ $mine{s2} } >= 10,
	'tenants on both shards (s1 ' . scalar(@{ $mine{s1} }) . ', s2 ' . scalar(@{ $mine{s2} }) . ')');

my %conninfo = map { $_ => $nodes->{$_}->connstr('postgres') } @shards;
my $apply = apply_daemon(shards => [ map { [ $_, 'primary' ] } @shards ], primaries => \%conninfo);
launch_apply($apply, 1);

# --- pgbench on both shards, kill -9 of the daemon meanwhile ----------------------------------------
my $script = test_dir() . '/transfer.sql';
open my $bf, '>', $script or die "cannot write $script: $!";
print $bf q{\set i random(1, :n)
\set a random(1, 10)
\set b random(1, 10)
\set amount random(1, 50)
SELECT tenant AS t FROM mine WHERE i = :i \gset
BEGIN;
UPDATE accounts SET balance = balance - :amount, moves = moves + 1 WHERE tenant_id = :t AND id = :a;
UPDATE accounts SET balance = balance + :amount, moves = moves + 1 WHERE tenant_id = :t AND id = :b;
COMMIT;
};
close $bf;
my %sum = map { $_ => 1000 * $naccounts } 1 .. $ntenants;
my $readers = start_readers(data_dir => $apply->{data_dir}, table => 'public.accounts', column => 'balance',
	rows => $naccounts, sum => \%sum, tenants => [ 1 .. $ntenants ], n => 2, seed => $seed);
my $bench = start_shard_pgbench(conninfo => \%conninfo, mine => \%mine, script => $script, seconds => 4 + $kills);
for my $k (1 .. $kills)
{
	usleep(300_000 + $rng->below(900_000));
	kill_apply($apply);
	launch_apply($apply, 0);
}
finish_shard_pgbench($bench, 'transfers', 100);
wait_apply_connected($apply);
ok(wait_apply_caught_up($apply, $nodes, 'the daemon to catch up with both primaries'), 'caught up after the kills');
my $r = stop_readers($readers);
cmp_ok($r->{reads}, '>', 0, "readers read the tenants throughout ($r->{reads} reads)");
is($r->{violations}, 0, 'no read saw a broken money sum') or diag($r->{examples});
is($r->{errors}, 0, 'readers met no error') or diag($r->{examples});
my @tables = ([ 'accounts', 'id' ]);
compare_replicas(data_dir => $apply->{data_dir}, tenants => [ 1 .. $ntenants ], owner => \%owner,
	tables => \@tables, what => "after $kills kill -9");
verify_replicas($apply->{data_dir}, $ntenants, 'after the kills');
my $log = slurp_file($apply->{log});
like($log, qr/event=copy_done /, 'the tenants were copied from the primaries first');
like($log, qr/event=shard_connected shard=s2 .*relay_name="primary /, "shard s2 streamed from its primary's slot, no relay");

# --- the slots, status updates of an idle stream ----------------------------------------------------
for my $s (@shards)
{
	is($nodes->{$s}->safe_psql('postgres',
			"SELECT plugin FROM pg_replication_slots WHERE slot_name = 'edgeshard_apply_edge1'"),
		'edgeshard', "$s: the edge's own slot, plugin edgeshard");
}
my %sessions = map { $_ => apply_metric($apply, 'edgeshard_apply_shard_sessions_total', $_) } @shards;
sleep 5;    # 2.5 wal_sender_timeouts without a change
for my $s (@shards)
{
	is(apply_metric($apply, 'edgeshard_apply_shard_sessions_total', $s), $sessions{$s},
		"$s: the idle stream outlived wal_sender_timeout (no reconnect)");
}
my %applied = map { $_ => apply_metric($apply, 'edgeshard_apply_shard_applied_lsn', $_) } @shards;
is(stop_apply($apply), 0, 'the daemon stops cleanly');
for my $s (@shards)
{
	my $confirmed = lsn_num($nodes->{$s}->safe_psql('postgres',
			"SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'edgeshard_apply_edge1'"));
	ok($confirmed >= $applied{$s} && $confirmed > 0,
		"$s: the slot confirms what the edge made durable ($confirmed >= $applied{$s})");
}

# --- a lost slot ------------------------------------------------------------------------------------
$nodes->{s2}->safe_psql('postgres', "SELECT pg_drop_replication_slot('edgeshard_apply_edge1')");
my $t2 = $mine{s2}[0];
$nodes->{s2}->safe_psql('postgres',
	"UPDATE accounts SET balance = balance + 7 WHERE tenant_id = $t2 AND id = 1;
	 UPDATE accounts SET balance = balance - 7 WHERE tenant_id = $t2 AND id = 2;");
launch_apply($apply, 0);
ok(wait_until(sub { slurp_file($apply->{log}) =~ /event=shard_connect_failed .*shard=s2 .*code=slot_missing/ },
		'the lost slot to be reported'), 'a missing slot under an applied shard is refused (slot_missing)');
like(slurp_file($apply->{log}), qr/code=slot_missing message="slot edgeshard_apply_edge1 does not exist.*move data_dir away/,
	'the message says what to do');
is($nodes->{s2}->safe_psql('postgres', "SELECT count(*) FROM pg_replication_slots"), '0',
	'no slot was created behind the gap');
is(stop_apply($apply), 0, 'the daemon stops cleanly');

my $fresh = apply_daemon(tag => 'fresh', shards => [ map { [ $_, 'primary' ] } @shards ], primaries => \%conninfo);
launch_apply($fresh, 1);
ok(wait_apply_caught_up($fresh, $nodes, 'a new data_dir to catch up'), 'a new data_dir catches up');
ok(wait_until(sub { (apply_metric($fresh, 'edgeshard_apply_tenants_copying') // 1) == 0 }, 'publication'),
	'the copies are published');
compare_replicas(data_dir => $fresh->{data_dir}, tenants => [ 1 .. $ntenants ], owner => \%owner,
	tables => \@tables, what => 'a new data_dir after the slot was lost');
is(stop_apply($fresh), 0, 'the daemon stops cleanly');

$nodes->{$_}->stop for @shards;
done_testing();
