# Helpers of the edge-replica TAP tests (007, 008): shard primaries with a common map, the
# edgeshard-apply daemon (config, start, kill -9, restart, /metrics, waiting for catch-up), the
# checker that compares every tenant's replica (edgeshard-replica scan) with its primary
# (row_to_json) row for row, edgeshard-replica runs, the test's seed (ES_SEED; the generator is
# ReplicaReader::Rng) and the reader processes (ReplicaReader.pm) that check a per-tenant
# invariant while the daemon works.
package ReplicaCheck;

use strict;
use warnings;
use Exporter 'import';
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes ();
use Cwd qw(abs_path);
use File::Basename qw(basename dirname);
use File::Path qw(rmtree);
use RelayHarness qw(wait_until lsn_num http_metrics kill_at_exit);
use ReplicaReader;

our @EXPORT = qw(test_dir test_seed start_shard_primaries tenants_by_shard start_shard_pgbench
  finish_shard_pgbench apply_daemon launch_apply kill_apply stop_apply
  apply_metric wait_apply_connected wait_apply_caught_up replica_cli replica_rows primary_rows
  compare_replicas verify_replicas start_readers stop_readers kill_at_exit apply_memory_kb
  replica_digest primary_digest);

# A directory of this test's own under tmp_check (tmp_check/<test name>), emptied at its first
# use: prove runs every test with the same tmp_check (kept between runs), so daemons' data
# directories must be neither shared across tests nor left over from a previous run.
my $test_dir;
sub test_dir
{
	return $test_dir if defined $test_dir;
	$test_dir = "$PostgreSQL::Test::Utils::tmp_check/" . basename($0, '.pl');
	rmtree($test_dir);
	mkdir $test_dir or die "cannot create $test_dir: $!";
	return $test_dir;
}

# --- seeded randomness -----------------------------------------------------------------------

# The test's seed: ES_SEED when set, else a fresh one. Printed (diag) so that a failing run can be
# repeated with ES_SEED=<seed>.
sub test_seed
{
	my ($what) = @_;
	my $seed = $ENV{ES_SEED} // (int(Time::HiRes::time() * 1000) ^ ($$ << 8)) % 2147483647;
	$seed = $seed % 4294967296;
	diag("$what: seed $seed (ES_SEED=$seed repeats the workload and the kill delays)");
	return $seed;
}

# --- shard primaries ---------------------------------------------------------------------------

# Starts one primary per name (logical decoding with the edgeshard plugin allowed, timezone UTC),
# each with the extension and every shard registered in the same order (the same map), runs $ddl
# on each and distributes every table of @$distribute by tenant_id. Returns a hash name => node.
sub start_shard_primaries
{
	my ($names, $ddl, $distribute) = @_;
	my %node;
	for my $name (@$names)
	{
		my $n = PostgreSQL::Test::Cluster->new($name);
		$n->init;
		$n->append_conf('postgresql.conf', qq{
wal_level = logical
max_wal_senders = 10
max_replication_slots = 10
output_plugin_libraries = 'pgoutput, test_decoding, edgeshard'
edgeshard.node_name = '$name'
timezone = 'UTC'
});
		$n->start;
		$node{$name} = $n;
	}
	for my $name (@$names)
	{
		my $sql = "CREATE EXTENSION edgeshard;\n";
		for my $s (@$names)
		{
			my $conninfo = $node{$s}->connstr('postgres') =~ s/'/''/gr;
			$sql .= "SELECT edgeshard.add_shard('$s', '$conninfo');\n";
		}
		$sql .= "$ddl\n";
		$sql .= "SELECT edgeshard.distribute_table('$_', 'tenant_id');\n" for @$distribute;
		$node{$name}->safe_psql('postgres', $sql);
	}
	return \%node;
}

# Tenants 1 .. $n by the shard the map gives them (shard_for on the first node): returns a hash
# with owner_name (array: tenant => shard name), owner (tenant => node) and mine (shard name =>
# its tenants, ascending). Each shard's table `mine (i int PRIMARY KEY, tenant bigint)`, when the
# test created it, gets its tenants numbered from 1 (for pgbench scripts: a random i picks one).
sub tenants_by_shard
{
	my ($nodes, $n) = @_;
	my @names = sort keys %$nodes;
	my @owner_name = (undef, split /,/, $nodes->{ $names[0] }->safe_psql('postgres',
		"SELECT string_agg(edgeshard.shard_for(g), ',' ORDER BY g) FROM generate_series(1, $n) g"));
	my %t = (owner_name => \@owner_name, owner => {}, mine => {});
	for my $tenant (1 .. $n)
	{
		$t{owner}{$tenant} = $nodes->{ $owner_name[$tenant] };
		push @{ $t{mine}{ $owner_name[$tenant] } }, $tenant;
	}
	for my $s (@names)
	{
		my @mine = @{ $t{mine}{$s} // [] };
		next unless @mine && $nodes->{$s}->safe_psql('postgres', "SELECT to_regclass('mine') IS NOT NULL") eq 't';
		my $values = join(',', map { '(' . ($_ + 1) . ", $mine[$_])" } 0 .. $#mine);
		$nodes->{$s}->safe_psql('postgres', "INSERT INTO mine VALUES $values");
	}
	return \%t;
}

# Starts pgbench on every shard of %$conninfo (name => conninfo) for $o{seconds} with $o{script},
# $o{clients} clients (default 2), `-D n=<its tenant count>` from $o{mine}; output in the test's log
# directory. Returns the handles for finish_shard_pgbench.
sub start_shard_pgbench
{
	my (%o) = @_;
	my $clients = $o{clients} // 2;
	my @bench;
	for my $s (sort keys %{ $o{conninfo} })
	{
		my $log = "$PostgreSQL::Test::Utils::log_path/" . basename($0, '.pl') . "_pgbench_$s.log";
		push @bench, [ $s, $log, IPC::Run::start(
			[ 'pgbench', '-n', '-c', $clients, '-j', $clients, '-T', $o{seconds},
			  '-D', 'n=' . scalar(@{ $o{mine}{$s} }), '-f', $o{script}, $o{conninfo}{$s} ],
			'>', $log, '2>&1') ];
		kill_at_exit($bench[-1][2]);
	}
	return \@bench;
}

# Waits for the pgbench runs of start_shard_pgbench; one test per shard that it exited cleanly
# having committed more than $min transactions ($what names them).
sub finish_shard_pgbench
{
	my ($bench, $what, $min) = @_;
	for my $b (@$bench)
	{
		my ($s, $log, $h) = @$b;
		$h->finish;
		my $out = PostgreSQL::Test::Utils::slurp_file($log);
		my ($tx) = $out =~ /number of transactions actually processed: (\d+)/;
		ok($? == 0 && ($tx // 0) > $min, "pgbench on $s committed " . ($tx // 0) . " $what") or diag($out);
	}
}

# --- the apply daemon ---------------------------------------------------------------------------

# Writes the configuration of an edgeshard-apply daemon and returns its hash (not started):
# name, data_dir, metrics_port, log, conf, shards (array of [name, relay hash], or [name,
# 'primary'] for a shard streamed from its primary's slot). Options: name (the subscriber name,
# default edge1), tag (names its files, default the name), shards, primaries (shard name =>
# conninfo: `primary` settings), data_dir, and any other setting as key => value.
sub apply_daemon
{
	my (%o) = @_;
	my $name = delete $o{name} // 'edge1';
	my $tag = delete $o{tag} // $name;
	my $shards = delete $o{shards};
	my $primaries = delete $o{primaries} // {};
	my %a = (
		name => $name,
		shards => $shards,
		data_dir => delete $o{data_dir} // test_dir() . "/apply_$tag",
		metrics_port => PostgreSQL::Test::Cluster::get_free_port(),
		log => "$PostgreSQL::Test::Utils::log_path/" . basename($0, '.pl') . "_apply_$tag.log",
		conf => test_dir() . "/apply_$tag.conf");
	unlink $a{log};    # appended to by each run of the daemon: none of a previous test run
	my %settings = (
		name => $name,
		data_dir => $a{data_dir},
		tenants => 'all',
		flush_interval_ms => 20,
		position_flush_interval_ms => 200,
		compact_deltas => 4,
		reconnect_min_ms => 50,
		reconnect_max_ms => 500,
		metrics_listen => "127.0.0.1:$a{metrics_port}",
		%o);
	open my $fh, '>', $a{conf} or die "cannot write $a{conf}: $!";
	for my $k (sort keys %settings)
	{
		my $v = $settings{$k} =~ s/'/''/gr;
		print $fh "$k = '$v'\n";
	}
	for my $s (@$shards)
	{
		my $upstream = ref $s->[1] ? "127.0.0.1:$s->[1]{port}" : $s->[1];
		print $fh "shard = '$s->[0]=$upstream'\n";
	}
	for my $s (sort keys %$primaries)
	{
		my $conninfo = $primaries->{$s} =~ s/'/''/gr;
		print $fh "primary = '$s=$conninfo'\n";
	}
	close $fh;
	return \%a;
}

# Starts the daemon (again) in the background; with $wait, waits until every shard is connected.
sub launch_apply
{
	my ($a, $wait) = @_;
	$a->{handle} = IPC::Run::start([ 'edgeshard-apply', '--config', $a->{conf} ],
		'>>', $a->{log}, '2>>', $a->{log});
	kill_at_exit(sub { $a->{handle} }) unless $a->{launches}++;
	wait_apply_connected($a) if $wait;
}

# Waits until the daemon is connected to every shard's relay; fails the test (and returns 0) when
# it exits or times out first.
sub wait_apply_connected
{
	my ($a) = @_;
	my $connected = wait_until(sub {
			return 1 unless $a->{handle}->pumpable;
			for my $s (@{ $a->{shards} })
			{
				return 0 unless (apply_metric($a, 'edgeshard_apply_shard_connected', $s->[0]) // 0) == 1;
			}
			return 1;
		},
		"edgeshard-apply $a->{name} to connect to every relay");
	return 0 unless $connected;
	return 1 if $a->{handle}->pumpable;
	my @tail = (split /\n/, slurp_file($a->{log}))[-5 .. -1];
	fail("edgeshard-apply $a->{name} exited before it connected to every relay");
	diag(join("\n", grep { defined } @tail));
	return 0;
}

# Kills the daemon with SIGKILL and reaps it.
sub kill_apply
{
	my ($a) = @_;
	return unless $a->{handle} && $a->{handle}->pumpable;
	$a->{handle}->signal('KILL');
	eval { $a->{handle}->finish };
}

# Stops the daemon with SIGTERM; returns its exit status (undef when it was not running).
sub stop_apply
{
	my ($a) = @_;
	return undef unless $a->{handle} && $a->{handle}->pumpable;
	$a->{handle}->signal('TERM');
	eval { $a->{handle}->finish };
	return $a->{handle}->result(0);
}

# The daemon's /metrics as a hash "name{labels}" => value; undef when it does not answer.
sub apply_metrics
{
	my ($a) = @_;
	return http_metrics($a->{metrics_port});
}

# One metric of the daemon; for $shard when given.
sub apply_metric
{
	my ($a, $name, $shard) = @_;
	my $m = apply_metrics($a) or return undef;
	my $labels = "subscriber=\"$a->{name}\"" . (defined $shard ? ",shard=\"$shard\"" : '');
	return $m->{"$name\{$labels\}"};
}

# Waits until the daemon's applied (acked) position of every shard reaches the end of its
# primary's WAL as it is now: $nodes is name => node. Returns 1 on success.
sub wait_apply_caught_up
{
	my ($a, $nodes, $what) = @_;
	my %want;
	for my $s (@{ $a->{shards} })
	{
		my $lsn = $nodes->{ $s->[0] }->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
		$want{ $s->[0] } = lsn_num($lsn);
	}
	return wait_until(sub {
			for my $s (keys %want)
			{
				return 0 unless (apply_metric($a, 'edgeshard_apply_shard_applied_lsn', $s) // 0) >= $want{$s};
			}
			return 1;
		},
		$what);
}

# --- edgeshard-replica and the checker ----------------------------------------------------------

# The running daemon's memory from /proc/<pid>/status: (peak RSS VmHWM, current RSS VmRSS) in kB;
# empty when it is not running.
sub apply_memory_kb
{
	my ($a) = @_;
	return () unless $a->{handle} && $a->{handle}->pumpable;
	my $pid = $a->{handle}{KIDS}[0]{PID} or return ();
	open(my $fh, '<', "/proc/$pid/status") or return ();
	my %kb;
	while (<$fh>) { $kb{$1} = $2 if /^(VmHWM|VmRSS):\s+(\d+) kB/; }
	close $fh;
	return ($kb{VmHWM}, $kb{VmRSS});
}

# Count and MD5 of the lines a command prints, read as they come (tables too big to hold).
sub _lines_digest
{
	my (@cmd) = @_;
	require Digest::MD5;
	my $md5 = Digest::MD5->new;
	my $count = 0;
	open(my $fh, '-|', @cmd) or die "cannot run $cmd[0]: $!";
	while (my $line = <$fh>)
	{
		chomp $line;
		next unless $line =~ /\S/;
		$md5->add("$line\n");
		$count++;
	}
	close $fh or die "$cmd[0] failed: $? $!";
	return ($count, $md5->hexdigest);
}

# A tenant's rows of $table in the replica as (count, MD5 of the lines replica_rows gives), read
# as a stream: for tables too big for replica_rows.
sub replica_digest
{
	my ($data_dir, $tenant, $table) = @_;
	return _lines_digest('edgeshard-replica', 'scan', $data_dir, $tenant, $table);
}

# The same tenant's rows on a primary (row_to_json ordered by $order, as primary_rows renders
# them; tenant_id must be numeric here).
sub primary_digest
{
	my ($node, $tenant, $table, $order) = @_;
	return _lines_digest('psql', '-X', '-A', '-t', '-q', '-d', $node->connstr('postgres'), '-c',
		"SELECT row_to_json(x) FROM $table x WHERE tenant_id = $tenant ORDER BY $order");
}

# Runs edgeshard-replica with @args; returns (exit status, stdout, stderr).
sub replica_cli
{
	my (@args) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'edgeshard-replica', @args ], '>', \$out, '2>', \$err);
	return ($? >> 8, $out, $err);
}

# A tenant's rows of $table in the replica under $data_dir, one JSON object a line in key order,
# as one string; '' when the replica does not have the table or the tenant (yet). Dies on any
# other failure (corruption, a row that does not decode).
sub replica_rows
{
	my ($data_dir, $tenant, $table) = @_;
	my ($status, $out, $err) = replica_cli('scan', $data_dir, $tenant, $table);
	# No table in the replica (1, "no table") or no replica of the tenant (3).
	return '' if ($status == 1 && $err =~ /no table "\Q$table\E"/) || $status == 3;
	die "edgeshard-replica scan $tenant $table failed ($status): $err" if $status != 0;
	chomp $out;
	return $out;
}

# Every tenant's rows of $table on a primary: tenant => rows as replica_rows renders them
# (row_to_json, ordered by $order, a column list that sorts like the replica's keys). Tenant keys
# travel as hex (any bytes: newlines, tabs) and come back as the key's bytes.
sub primary_rows
{
	my ($node, $table, $order) = @_;
	my $text = $node->safe_psql('postgres', qq{
		SELECT encode(convert_to(tenant_id::text, current_setting('server_encoding')), 'hex')
		       || E'\\t' || string_agg(row_to_json(x)::text, E'\\t' ORDER BY $order)
		  FROM $table x GROUP BY tenant_id});
	my %rows;
	for my $line (split /\n/, $text)
	{
		my ($t, @r) = split /\t/, $line;
		$rows{ pack('H*', $t) } = join("\n", @r);
	}
	return \%rows;
}

# The checker: for every tenant of @$tenants (tenant => owning node in %$owner) and every table
# of @$tables ([name, order by]), the replica's rows equal the owner's, row for row. One test;
# differences are shown (at most $max_diags tenants). Returns the number of tenants that differ.
sub compare_replicas
{
	my (%o) = @_;
	my ($data_dir, $tenants, $owner, $tables, $what) = @o{qw(data_dir tenants owner tables what)};
	my $max_diags = $o{max_diags} // 5;
	my %primary;    # "node name\0table" => rows by tenant
	my ($rows, $differ, $shown) = (0, 0, 0);
	for my $t (@$tenants)
	{
		my $node = $owner->{$t};
		my @bad;
		for my $tab (@$tables)
		{
			my ($table, $order) = @$tab;
			my $k = $node->name . "\0$table";
			$primary{$k} //= primary_rows($node, $table, $order);
			my $want = $primary{$k}{$t} // '';
			my $got = eval { replica_rows($data_dir, $t, $table) };
			$got = "(error) $@" unless defined $got;
			$rows += scalar(grep { /\S/ } split /\n/, $want);
			push @bad, [ $table, $want, $got ] if $want ne $got;
		}
		next unless @bad;
		$differ++;
		next if $shown++ >= $max_diags;
		for my $diff (@bad)
		{
			my ($table, $want, $got) = @$diff;
			diag(_row_diff($t, $table, $what, $want, $got));
		}
	}
	is($differ, 0, "$what: every tenant's replica equals its primary, row for row ("
		  . scalar(@$tenants) . " tenants, " . scalar(@$tables) . " tables, $rows rows)");
	return $differ;
}

# A short description of how a tenant's replica rows differ from the primary's.
sub _row_diff
{
	my ($t, $table, $what, $want, $got) = @_;
	my @w = grep { /\S/ } split /\n/, $want;
	my @g = grep { /\S/ } split /\n/, $got;
	my %in_g = map { $_ => 1 } @g;
	my %in_w = map { $_ => 1 } @w;
	my @missing = grep { !$in_g{$_} } @w;
	my @extra = grep { !$in_w{$_} } @g;
	my $cut = sub { my @l = @_; my $n = @l; splice(@l, 5) if $n > 5; join("\n", @l) . ($n > 5 ? "\n... ($n in all)" : '') };
	return "tenant $t, table $table differs ($what): primary " . scalar(@w) . " rows, replica "
	  . scalar(@g) . " rows\n--- only on the primary:\n" . $cut->(@missing)
	  . "\n--- only in the replica:\n" . $cut->(@extra);
}

# edgeshard-replica verify over the whole data directory: one test that it exits 0 and says
# "ok" for $expected tenants. Returns the exit status.
sub verify_replicas
{
	my ($data_dir, $expected, $what) = @_;
	my ($status, $out, $err) = replica_cli('verify', $data_dir);
	my $ok = scalar(grep { /: ok$/ } split /\n/, $out);
	ok($status == 0 && $ok == $expected, "$what: edgeshard-replica verify is clean ($ok of $expected tenants ok)")
	  or diag("status $status\n$err\n" . substr($out, 0, 2000));
	return $status;
}

# --- full disks ---------------------------------------------------------------------------------

# The small file systems a test may fill (scripts/test mounts them, as root, before prove): the
# directories <ES_SMALL_FS>/<name> for each name, each its own mount. Returns a hash name =>
# directory, or (undef, why) when they are not there (a developer running prove by hand).
sub small_filesystems
{
	my (@names) = @_;
	my $root = $ENV{ES_SMALL_FS};
	return (undef, 'ES_SMALL_FS is not set: scripts/test mounts small tmpfs file systems for this test (it needs root)')
	  unless defined $root && $root ne '';
	my %dirs;
	for my $name (@names)
	{
		my $dir = "$root/$name";
		return (undef, "$dir is not a directory") unless -d $dir;
		return (undef, "$dir is not writable") unless -w $dir;
		# Its own file system: a device other than its parent's.
		return (undef, "$dir is not a mount point of its own") if (stat $dir)[0] == (stat $root)[0];
		$dirs{$name} = $dir;
	}
	return \%dirs;
}

# Fills the file system holding $dir with a filler file (1 MiB, then 4 KiB writes until the file
# system says it is full; then $leave bytes given back, when asked) and returns the file's path:
# delete it to give the space back.
sub fill_filesystem
{
	my ($dir, $leave) = @_;
	my $path = "$dir/filler";
	open my $fh, '>', $path or die "cannot create $path: $!";
	binmode $fh;
	my $written = 0;
	for my $size (1 << 20, 4096)
	{
		my $chunk = "\0" x $size;
		while (1)
		{
			my $n = syswrite($fh, $chunk);
			last unless defined $n && $n == $size;
			$written += $n;
		}
	}
	close $fh;
	if ($leave)
	{
		truncate($path, $written - $leave) or die "cannot truncate $path: $!";
		$written -= $leave;
	}
	note("filled $dir with $written bytes");
	return $path;
}

# The process id of a daemon started with IPC::Run (undef when it is not running).
sub process_pid
{
	my ($handle) = @_;
	return undef unless $handle && $handle->pumpable;
	return $handle->{KIDS}[0]{PID};
}

push @EXPORT, qw(small_filesystems fill_filesystem process_pid);

# --- readers -------------------------------------------------------------------------------------

# Starts $n reader processes over the replica under $data_dir: each loops over @$tenants (in its
# own random order), reads the tenant's $table with edgeshard-replica scan and checks the
# invariant (ReplicaReader::main): no row before the tenant is there, then always exactly $rows
# rows of that tenant whose $column sums to $sum{tenant}. Returns a hash for stop_readers.
sub start_readers
{
	my (%o) = @_;
	my $dir = test_dir() . '/readers';
	mkdir $dir;
	my $spec = "$dir/spec";
	open my $fh, '>', $spec or die "cannot write $spec: $!";
	print $fh "data_dir\t$o{data_dir}\ntable\t$o{table}\ncolumn\t$o{column}\nrows\t$o{rows}\n";
	print $fh "sum\t$_\t$o{sum}{$_}\n" for @{ $o{tenants} };
	close $fh;
	my %r = (dir => $dir, stop => "$dir/stop", n => $o{n}, handles => []);
	unlink $r{stop};
	my $lib = dirname(abs_path($INC{'ReplicaReader.pm'}));
	for my $i (1 .. $o{n})
	{
		my $out = "$dir/reader$i.out";
		unlink $out;
		push @{ $r{handles} }, IPC::Run::start(
			[ $^X, "-I$lib", '-MReplicaReader', '-e', 'exit ReplicaReader::main(@ARGV)',
			  $spec, $r{stop}, $out, $$, $o{seed} + $i, $o{max_seconds} // 1800 ],
			'>', "$dir/reader$i.log", '2>&1');
		kill_at_exit($r{handles}[-1]);
		push @{ $r{outs} }, $out;
	}
	return \%r;
}

# Stops the readers (a stop file, then waits) and returns their summed counts: reads (tenant
# reads that saw its rows), empty (reads before the tenant had rows), violations, errors,
# examples (text).
sub stop_readers
{
	my ($r) = @_;
	open my $fh, '>', $r->{stop} or die "cannot write $r->{stop}: $!";
	close $fh;
	my %sum = (reads => 0, empty => 0, violations => 0, errors => 0, examples => '', finished => 0);
	for my $i (0 .. $#{ $r->{handles} })
	{
		my $h = $r->{handles}[$i];
		eval { $h->finish };
		if (-e $r->{outs}[$i])
		{
			my $text = PostgreSQL::Test::Utils::slurp_file($r->{outs}[$i]);
			for my $line (split /\n/, $text)
			{
				if ($line =~ /^(reads|empty|violations|errors|finished)=(\d+)$/) { $sum{$1} += $2; }
				elsif ($line =~ /^example /) { $sum{examples} .= "$line\n"; }
			}
		}
	}
	return \%sum;
}

1;
