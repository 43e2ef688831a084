# edgeshard-apply at scale, end to end with real primaries: two shard primaries (s1, s2, the same
# map), one relay each, one edgeshard-apply following both, 200 tenants placed over the shards.
# A random workload (seeded: ES_SEED) of inserts, updates, key-changing updates, deletes, TOASTed
# values left unchanged, multi-tenant transactions and TRUNCATEs (table-wide on one shard: the
# other shard's tenants keep their rows) runs on both primaries while the daemon is killed with
# SIGKILL at random moments and restarted each time (at most 40 tenant writers open: the others
# are closed once idle and reopened by their next change): 50 times (about 35 s of the test's 60), 200
# with ES_LONG (scripts/test --long), or APPLY_TEST_KILLS times. Two reader processes running
# throughout, across the kills, read every tenant's accounts from the replica: transfers move
# money between two accounts of a tenant, so every read must show exactly the tenant's accounts
# with their constant sum (never half a transaction, never rows that vanish). At the end every
# tenant's replica equals its primary row for row, and edgeshard-replica verify is clean.
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

my $long = $ENV{ES_LONG} ? 1 : 0;
my $kill_target = $ENV{APPLY_TEST_KILLS} // ($long ? 200 : 50);
my $ntenants = 200;
my $naccounts = 10;
my $chunk_tx = 150;    # transactions per workload chunk (one psql run per shard)
my $seed = test_seed('007_apply_scale');
my $kill_rng = ReplicaReader::Rng->new($seed);
my $token = 'apply-scale-token';
$ENV{EDGESHARD_RELAY_TOKEN} = $token;

# --- two shard primaries, a relay each, the apply daemon following both ------------------------
my @shards = qw(s1 s2);
my $nodes = start_shard_primaries(\@shards, q{
	CREATE TABLE accounts (tenant_id bigint, id int, balance bigint NOT NULL, PRIMARY KEY (tenant_id, id));
	CREATE TABLE items (tenant_id bigint, id int, v text, n int, PRIMARY KEY (tenant_id, id));
	-- out of line and uncompressed: large values are TOASTed, and UPDATEs that leave them alone
	-- send them as "unchanged"
	ALTER TABLE items ALTER COLUMN v SET STORAGE EXTERNAL;
	CREATE TABLE events (tenant_id bigint, seq int, kind text NOT NULL, ok bool, amount numeric(12, 2),
		at timestamptz, PRIMARY KEY (tenant_id, seq));
}, [qw(accounts items events)]);
my @tables = ([ 'accounts', 'id' ], [ 'items', 'id' ], [ 'events', 'seq' ]);

my %relay;
for my $s (@shards)
{
	$relay{$s} = start_relay(name => "scale_$s", data_dir => test_dir() . "/relay_$s",
		upstream => $nodes->{$s}->connstr('postgres'), token => $token, slot => "relay_$s");
	kill_at_exit(sub { $relay{$s}{handle} });
	wait_until(sub { (metric($relay{$s}, 'edgeshard_relay_upstream_connected') // 0) == 1 }, "relay of $s upstream");
}
# At most 40 of the 200 tenants' writers stay open: the others are closed once idle and reopened
# by their next change (or a TRUNCATE on a shard they have rows from).
my $max_open = 40;
my $apply = apply_daemon(shards => [ map { [ $_, $relay{$_} ] } @shards ], max_open_tenants => $max_open);
launch_apply($apply, 1);

# Tenants 1..200 over the shards, as the ring places them (both shards route alike).
my $routing = "SELECT string_agg(edgeshard.shard_for(g), ',' ORDER BY g) FROM generate_series(1, $ntenants) g";
my @owner_name = (undef, split /,/, $nodes->{s1}->safe_psql('postgres', $routing));
is($nodes->{s2}->safe_psql('postgres', $routing), join(',', @owner_name[ 1 .. $ntenants ]),
	'both shards route the tenants alike');
my @tenants = (1 .. $ntenants);
my %owner = map { $_ => $nodes->{ $owner_name[$_] } } @tenants;
my %mine;
push @{ $mine{ $owner_name[$_] } }, $_ for @tenants;
ok(@{ $mine{s1} } >= 50 && @{ $mine{s2} } >= 50,
	'tenants on both shards (s1 ' . scalar(@{ $mine{s1} }) . ', s2 ' . scalar(@{ $mine{s2} }) . ')');

# Every tenant's accounts sum to 1000 + tenant, whatever the transfers.
my %sum = map { $_ => 1000 + $_ } @tenants;

# --- the workload generator: a model of each shard's rows, to write valid random statements -----
my %gen;
for my $i (0 .. $#shards)
{
	my $s = $shards[$i];
	$gen{$s} = { shard => $s, rng => ReplicaReader::Rng->new($seed * 7 + $i + 1), tenants => $mine{$s},
		chunks => 0, tx => 0, truncates => 0 };
}

# Initial rows of a shard's tenants: one transaction per tenant (accounts all at once: a reader
# sees none or all of them).
sub initial_sql
{
	my ($g) = @_;
	my $sql = '';
	for my $t (@{ $g->{tenants} })
	{
		$g->{acct}{$t} = [ 1 .. $naccounts ];
		$g->{next_acct}{$t} = $naccounts + 1;
		$g->{items}{$t} = { map { $_ => 0 } 1 .. 5 };
		$g->{next_item}{$t} = 6;
		$g->{events}{$t} = { 1 => 1, 2 => 1 };
		$g->{next_event}{$t} = 3;
		my $accounts = join(', ', map { "($t, $_, " . ($_ == $naccounts ? 100 + $t : 100) . ')' } 1 .. $naccounts);
		$sql .= "BEGIN; INSERT INTO accounts VALUES $accounts;\n"
		  . "INSERT INTO items SELECT $t, g, 'init-$t-' || g, g FROM generate_series(1, 5) g;\n"
		  . "INSERT INTO events VALUES ($t, 1, 'open', true, 1.50, '2024-01-01 00:00:00+00'), "
		  . "($t, 2, 'note', NULL, NULL, NULL); COMMIT;\n";
	}
	return $sql;
}

# Two distinct elements of a list.
sub two_of
{
	my ($rng, $list) = @_;
	my $i = $rng->below(scalar @$list);
	my $j = ($i + 1 + $rng->below(scalar(@$list) - 1)) % scalar(@$list);
	return ($list->[$i], $list->[$j]);
}

# A few ids of a hash of ids (sorted, for determinism).
sub some_ids
{
	my ($rng, $h, $n) = @_;
	my @ids = sort { $a <=> $b } keys %$h;
	return () unless @ids;
	my %pick;
	$pick{ $rng->pick(\@ids) } = 1 for 1 .. $n;
	return sort { $a <=> $b } keys %pick;
}

# Statements moving money between two accounts of tenant $t (the sum stays).
sub transfer_sql
{
	my ($g, $t) = @_;
	my $rng = $g->{rng};
	my ($a, $b) = two_of($rng, $g->{acct}{$t});
	my $x = 1 + $rng->below(50);
	return "UPDATE accounts SET balance = balance + CASE id WHEN $a THEN -$x ELSE $x END "
	  . "WHERE tenant_id = $t AND id IN ($a, $b);\n" if $rng->below(3) == 0;
	return "UPDATE accounts SET balance = balance - $x WHERE tenant_id = $t AND id = $a;\n"
	  . "UPDATE accounts SET balance = balance + $x WHERE tenant_id = $t AND id = $b;\n";
}

# Statements inserting 1 to 4 items of tenant $t, now and then a large (TOASTed) one.
sub item_insert_sql
{
	my ($g, $t) = @_;
	my $rng = $g->{rng};
	my @values;
	for (1 .. 1 + $rng->below(4))
	{
		my $id = $g->{next_item}{$t}++;
		my $big = $rng->below(25) == 0;
		$g->{items}{$t}{$id} = $big ? 1 : 0;
		my $v = $big ? "repeat('big-$t-$id-', 2500)" : "'v-$t-$id-" . $rng->below(1000000) . "'";
		push @values, "($t, $id, $v, " . ($rng->below(5) == 0 ? 'NULL' : $rng->below(1000)) . ')';
	}
	return 'INSERT INTO items VALUES ' . join(', ', @values) . ";\n";
}

# Statements inserting an event of tenant $t.
sub event_insert_sql
{
	my ($g, $t) = @_;
	my $rng = $g->{rng};
	my $seq = $g->{next_event}{$t}++;
	$g->{events}{$t}{$seq} = 1;
	my $ok = (qw(true false NULL))[ $rng->below(3) ];
	my $amount = $rng->below(4) == 0 ? 'NULL' : sprintf('%d.%02d', $rng->below(100000) - 50000, $rng->below(100));
	my $at = $rng->below(4) == 0 ? 'NULL' : "'2024-01-01 00:00:00+00'::timestamptz + interval '" . $rng->below(100000000) . " seconds'";
	my $kind = $rng->pick([qw(open close pay refund note)]);
	return "INSERT INTO events VALUES ($t, $seq, '$kind', $ok, $amount, $at);\n";
}

# One random transaction (SQL text) of shard generator $g.
sub transaction_sql
{
	my ($g) = @_;
	my $rng = $g->{rng};
	my $t = $rng->pick($g->{tenants});
	my $kind = $rng->weighted({ transfer => 30, renumber => 3, reopen => 3, mixed => 5, multi => 4,
		item_insert => 15, item_n => 8, item_v => 4, item_key => 4, item_delete => 8, item_range => 1,
		event_insert => 8, event_delete => 3, all_tenants => 0.5, truncate => 0.05 });
	$g->{tx}++;
	my $new_id = sub { my ($tt) = @_; return $g->{next_acct}{$tt}++; };
	if ($kind eq 'transfer')
	{
		return "BEGIN;\n" . transfer_sql($g, $t) . "COMMIT;\n";
	}
	if ($kind eq 'renumber')
	{
		# A key-changing update: the account keeps its balance under a new id.
		my ($a) = two_of($rng, $g->{acct}{$t});
		my $n = $new_id->($t);
		$g->{acct}{$t} = [ map { $_ == $a ? $n : $_ } @{ $g->{acct}{$t} } ];
		return "UPDATE accounts SET id = $n WHERE tenant_id = $t AND id = $a;\n";
	}
	if ($kind eq 'reopen')
	{
		# Close an account into a new one: an insert and a delete in one transaction.
		my ($a) = two_of($rng, $g->{acct}{$t});
		my $n = $new_id->($t);
		$g->{acct}{$t} = [ map { $_ == $a ? $n : $_ } @{ $g->{acct}{$t} } ];
		return "BEGIN; INSERT INTO accounts SELECT tenant_id, $n, balance FROM accounts WHERE tenant_id = $t AND id = $a;\n"
		  . "DELETE FROM accounts WHERE tenant_id = $t AND id = $a; COMMIT;\n";
	}
	if ($kind eq 'mixed')
	{
		return "BEGIN;\n" . transfer_sql($g, $t) . item_insert_sql($g, $t) . event_insert_sql($g, $t)
		  . transfer_sql($g, $t) . "COMMIT;\n";
	}
	if ($kind eq 'multi')
	{
		# Several tenants of the shard in one transaction.
		my $sql = "BEGIN;\n";
		for (1 .. 2 + $rng->below(3))
		{
			my $u = $rng->pick($g->{tenants});
			$sql .= transfer_sql($g, $u);
			$sql .= item_insert_sql($g, $u) if $rng->below(2);
		}
		return $sql . "COMMIT;\n";
	}
	if ($kind eq 'item_insert')
	{
		return item_insert_sql($g, $t);
	}
	if ($kind eq 'item_n')
	{
		# Leaves v alone: a TOASTed v is sent as unchanged.
		my @ids = some_ids($rng, $g->{items}{$t}, 1 + $rng->below(3));
		return item_insert_sql($g, $t) unless @ids;
		return "UPDATE items SET n = coalesce(n, 0) + 1 WHERE tenant_id = $t AND id IN (" . join(', ', @ids) . ");\n";
	}
	if ($kind eq 'item_v')
	{
		my @ids = some_ids($rng, $g->{items}{$t}, 1);
		return item_insert_sql($g, $t) unless @ids;
		$g->{items}{$t}{ $ids[0] } = 0;
		return "UPDATE items SET v = 'u-" . $rng->below(1000000) . "' WHERE tenant_id = $t AND id = $ids[0];\n";
	}
	if ($kind eq 'item_key')
	{
		# A key-changing update, of a TOASTed row when there is one (its unchanged value moves to
		# the new key).
		my @big = sort { $a <=> $b } grep { $g->{items}{$t}{$_} } keys %{ $g->{items}{$t} };
		my ($id) = @big && $rng->below(2) ? ($rng->pick(\@big)) : some_ids($rng, $g->{items}{$t}, 1);
		return item_insert_sql($g, $t) unless defined $id;
		my $n = $g->{next_item}{$t}++;
		$g->{items}{$t}{$n} = delete $g->{items}{$t}{$id};
		return "UPDATE items SET id = $n, n = " . $rng->below(1000) . " WHERE tenant_id = $t AND id = $id;\n";
	}
	if ($kind eq 'item_delete')
	{
		my @ids = some_ids($rng, $g->{items}{$t}, 1 + $rng->below(3));
		return item_insert_sql($g, $t) unless @ids;
		delete $g->{items}{$t}{$_} for @ids;
		return "DELETE FROM items WHERE tenant_id = $t AND id IN (" . join(', ', @ids) . ");\n";
	}
	if ($kind eq 'item_range')
	{
		my $below = $g->{next_item}{$t} - 3;
		delete $g->{items}{$t}{$_} for grep { $_ < $below } keys %{ $g->{items}{$t} };
		return "DELETE FROM items WHERE tenant_id = $t AND id < $below;\n";
	}
	if ($kind eq 'event_insert')
	{
		return event_insert_sql($g, $t);
	}
	if ($kind eq 'event_delete')
	{
		my @seqs = some_ids($rng, $g->{events}{$t}, 1);
		return event_insert_sql($g, $t) unless @seqs;
		delete $g->{events}{$t}{ $seqs[0] };
		return "DELETE FROM events WHERE tenant_id = $t AND seq = $seqs[0];\n";
	}
	if ($kind eq 'all_tenants')
	{
		# One transaction touching every tenant of the shard.
		return "UPDATE items SET n = coalesce(n, 0) + 1000 WHERE id % 7 = " . $rng->below(7) . ";\n";
	}
	# TRUNCATE: table-wide, every tenant of this shard (the other shard keeps its rows).
	$g->{truncates}++;
	my $which = $rng->pick([ ['events'], ['items'], [ 'items', 'events' ] ]);
	for my $table (@$which)
	{
		$g->{$table}{$_} = {} for @{ $g->{tenants} };
	}
	return 'TRUNCATE ' . join(', ', @$which) . ";\n";
}

# The workers: one psql at a time per shard, running one chunk of transactions after another.
my %worker;
my $workload_dir = test_dir() . '/workload';
mkdir $workload_dir;

# Starts psql on shard $s with the SQL text $sql (written to a file of the test's directory).
sub start_worker
{
	my ($s, $sql) = @_;
	my $g = $gen{$s};
	my $file = "$workload_dir/$s-" . $g->{chunks}++ . '.sql';
	open my $fh, '>', $file or die "cannot write $file: $!";
	print $fh $sql;
	close $fh;
	$worker{$s} = { file => $file, handle => IPC::Run::start(
			[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $nodes->{$s}->connstr('postgres'), '-f', $file ],
			'>', "$file.out", '2>', "$file.err") };
	kill_at_exit($worker{$s}{handle});
}

# Whether shard $s's worker is idle; dies when its last chunk failed.
sub worker_idle
{
	my ($s) = @_;
	my $w = $worker{$s} or return 1;
	return 0 if $w->{handle}->pumpable;
	$w->{handle}->finish;
	my $status = $w->{handle}->result(0);
	delete $worker{$s};
	die "workload chunk $w->{file} failed ($status): " . slurp_file("$w->{file}.err") if $status != 0;
	return 1;
}

# Waits for every worker to end.
sub wait_workers
{
	for my $s (@shards)
	{
		usleep(50_000) until worker_idle($s);
	}
}

# --- readers, initial rows ----------------------------------------------------------------------
my $readers = start_readers(n => 2, data_dir => $apply->{data_dir}, table => 'accounts', column => 'balance',
	rows => $naccounts, tenants => \@tenants, sum => \%sum, seed => $seed);
start_worker($_, initial_sql($gen{$_})) for @shards;
wait_workers();
ok(wait_apply_caught_up($apply, $nodes, 'the initial rows to be applied'), 'initial rows applied');
compare_replicas(data_dir => $apply->{data_dir}, tenants => \@tenants, owner => \%owner, tables => \@tables,
	what => 'after the initial rows');

# --- the workload, with kill -9 of the daemon at random moments ----------------------------------
my $started = time;
my ($kills, $kills_while_busy, $kills_mid_apply) = (0, 0, 0);
while ($kills < $kill_target)
{
	# Sleep a random time (keeping both workers busy), then kill the daemon and restart it.
	my $until = Time::HiRes::time() + $kill_rng->uniform(0.05, 1.2);
	while (Time::HiRes::time() < $until)
	{
		for my $s (@shards)
		{
			start_worker($s, join('', map { transaction_sql($gen{$s}) } 1 .. $chunk_tx)) if worker_idle($s);
		}
		usleep(20_000);
	}
	my $busy = grep { !worker_idle($_) } @shards;
	my $applied = apply_metric($apply, 'edgeshard_apply_groups_applied_total') // 0;
	kill_apply($apply);
	$kills++;
	$kills_while_busy++ if $busy;
	$kills_mid_apply++ if $applied > 0;
	launch_apply($apply, 0);
}
my $kill_seconds = time - $started;
wait_workers();
diag("$kills kills of edgeshard-apply in ${kill_seconds}s; workload: "
	  . join(', ', map { "$_ $gen{$_}{tx} transactions in $gen{$_}{chunks} chunks, $gen{$_}{truncates} truncates" } @shards));
note("$kills kills: $kills_while_busy while a primary was writing, $kills_mid_apply after the run had applied"
	  . ' transactions');
# A run killed before it connected applied nothing: most runs must have been killed mid-work.
cmp_ok($kills_mid_apply, '>=', $kills / 2,
	"edgeshard-apply killed with SIGKILL $kills times, $kills_mid_apply of them after applying transactions");

# --- catch-up and the checker ---------------------------------------------------------------------
# Whatever the random workload did: one TRUNCATE on s1 alone, after which s2's tenants keep their
# events.
$nodes->{s1}->safe_psql('postgres', 'TRUNCATE events');
ok(wait_apply_caught_up($apply, $nodes, 'the restarted daemon to catch up with both primaries'),
	'the daemon caught up with both primaries');
for my $s (@shards)
{
	is($nodes->{$s}->safe_psql('postgres', q{
			SELECT count(*) FROM (SELECT tenant_id, sum(balance) AS s, count(*) AS n FROM accounts GROUP BY tenant_id) x
			 WHERE s <> 1000 + tenant_id OR n <> } . $naccounts),
		'0', "$s: every tenant's accounts still sum to its constant on the primary");
}
compare_replicas(data_dir => $apply->{data_dir}, tenants => \@tenants, owner => \%owner, tables => \@tables,
	what => "after the workload and $kills kills");
ok(wait_until(sub { (apply_metric($apply, 'edgeshard_apply_tenants') // 1e9) <= $max_open }, 'idle tenants to close'),
	"at most $max_open tenant writers stay open");
cmp_ok(apply_metric($apply, 'edgeshard_apply_tenant_reopens_total') // 0, '>', 0,
	'closed tenants were reopened by the TRUNCATE (' . (apply_metric($apply, 'edgeshard_apply_tenant_reopens_total') // 0) . ')');
cmp_ok(apply_metric($apply, 'edgeshard_apply_tenant_closes_total') // 0, '>', 0, 'and closed again once idle');
verify_replicas($apply->{data_dir}, $ntenants, "after $kills kills");

my $r = stop_readers($readers);
note("readers: $r->{reads} reads of a tenant's accounts, $r->{empty} before the tenant had any");
is($r->{finished}, 2, 'both readers ran to the end');
cmp_ok($r->{reads}, '>', 0, "the readers read accounts ($r->{reads} reads)");
is($r->{violations}, 0, 'no reader ever saw a partial transaction (account count and sum constant, no rows vanished)')
  or diag($r->{examples});
is($r->{errors}, 0, 'no read failed') or diag($r->{examples});

# --- shutdown -------------------------------------------------------------------------------------
is(stop_apply($apply), 0, 'edgeshard-apply stops cleanly on SIGTERM');
my $log = slurp_file($apply->{log});
my @errors = grep { /level=error/ } split /\n/, $log;
is(scalar(@errors), 0, 'edgeshard-apply logged no error in ' . $apply->{launches} . ' runs')
  or diag(join("\n", @errors[ 0 .. ($#errors < 9 ? $#errors : 9) ]));
for my $s (@shards)
{
	is(stop_relay($relay{$s}), 0, "relay of $s stops cleanly");
}
$nodes->{$_}->stop for @shards;
done_testing();
