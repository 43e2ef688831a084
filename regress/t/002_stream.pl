# The output plugin "edgeshard" through the replication protocol: edgeshard-dump --slot streams a
# workload over several tenants (inserts, updates with and without a key change, deletes, a
# TRUNCATE, a transaction cut into continuation frames) up to --endpos, and the JSON shows every
# row change exactly once, per tenant in commit order, in well-formed frame groups; the tenants
# and compression options work; the SQL interface sends the same frames; pg_recvlogical can
# start the plugin. With ES_LONG (scripts/test --long): the walsender's peak memory while it
# streams one transaction of 5,000,000 rows.
#
# edgeshard-dump is found on PATH (scripts/test puts the build's copy first).
use strict;
use warnings;
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $dump = 'edgeshard-dump';

my $node = PostgreSQL::Test::Cluster->new('stream');
$node->init;
$node->append_conf('postgresql.conf', q{
wal_level = logical
max_wal_senders = 10
max_replication_slots = 10
output_plugin_libraries = 'pgoutput, test_decoding, edgeshard'
edgeshard.node_name = 's1'
});
$node->start;
my $conn = $node->connstr('postgres');

# One shard (this node) owns every tenant; two distributed tables.
my $conninfo = $conn =~ s/'/''/gr;
$node->safe_psql('postgres', qq{
	CREATE EXTENSION edgeshard;
	SELECT edgeshard.add_shard('s1', '$conninfo');
	CREATE TABLE orders (tenant_id bigint, id int, note text, PRIMARY KEY (tenant_id, id));
	CREATE TABLE events (tenant_id bigint, id int, note text, PRIMARY KEY (tenant_id, id));
	SELECT edgeshard.distribute_table('orders', 'tenant_id');
	SELECT edgeshard.distribute_table('events', 'tenant_id');
});

# Runs edgeshard-dump with the given arguments; returns (exit status, stdout, stderr).
sub run_dump
{
	my ($out, $err) = ('', '');
	IPC::Run::run([ $dump, @_ ], '>', \$out, '2>', \$err,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	return ($? >> 8, $out, $err);
}

# Slots, all before the workload: one made by edgeshard-dump, the others by SQL and pg_recvlogical.
my ($rc, $out, $err) = run_dump('--dbname', $conn, '--slot', 'es_main', '--create-slot', '--endpos', '0/1');
is($rc, 0, 'edgeshard-dump --create-slot creates a slot and stops at once') or diag($err);
for my $slot (qw(es_none es_tenants es_sql))
{
	$node->safe_psql('postgres', "SELECT pg_create_logical_replication_slot('$slot', 'edgeshard')");
}
$node->command_ok([ 'pg_recvlogical', '-d', $conn, '-S', 'es_recv', '-P', 'edgeshard', '--create-slot' ],
	'pg_recvlogical creates a slot of the edgeshard plugin');
$node->safe_psql('postgres', "SELECT pg_create_logical_replication_slot('not_frames', 'test_decoding')");
my $not_frames_confirmed = $node->safe_psql('postgres',
	"SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'not_frames'");

# --- the workload, with the row changes each tenant should see, in commit order ----------------
# A change is a string: "I table tenant/id note", "U table tenant/id note [old tenant/id]",
# "D table tenant/id", and "T table" for a TRUNCATE (tenant "*": the many-tenants frames).
my %expected;
my %note;    # "table tenant/id" => note: the rows as the workload left them

# SQL inserting rows [tenant, id, note], and their expected changes.
sub insert_rows
{
	my ($table, @rows) = @_;
	for my $r (@rows)
	{
		my ($t, $id, $n) = @$r;
		$note{"$table $t/$id"} = $n;
		push @{ $expected{$t} }, "I $table $t/$id $n";
	}
	return "INSERT INTO $table VALUES " . join(', ', map { "($_->[0], $_->[1], '$_->[2]')" } @rows);
}

# SQL changing a row's note (the key stays: no old key in the UPDATE).
sub set_note
{
	my ($table, $t, $id, $n) = @_;
	$note{"$table $t/$id"} = $n;
	push @{ $expected{$t} }, "U $table $t/$id $n";
	return "UPDATE $table SET note = '$n' WHERE tenant_id = $t AND id = $id";
}

# SQL changing a row's key within its tenant: the UPDATE carries the old key.
sub change_id
{
	my ($table, $t, $id, $new) = @_;
	my $n = delete $note{"$table $t/$id"};
	$note{"$table $t/$new"} = $n;
	push @{ $expected{$t} }, "U $table $t/$new $n old $t/$id";
	return "UPDATE $table SET id = $new WHERE tenant_id = $t AND id = $id";
}

# SQL deleting a row.
sub delete_row
{
	my ($table, $t, $id) = @_;
	delete $note{"$table $t/$id"};
	push @{ $expected{$t} }, "D $table $t/$id";
	return "DELETE FROM $table WHERE tenant_id = $t AND id = $id";
}

# SQL emptying a table.
sub truncate_table
{
	my ($table) = @_;
	delete $note{$_} for grep { /^$table / } keys %note;
	push @{ $expected{'*'} }, "T $table";
	return "TRUNCATE $table";
}

# Runs statements as one transaction.
sub transaction
{
	$node->safe_psql('postgres', join(";\n", 'BEGIN', @_, 'COMMIT'));
}

transaction(insert_rows('orders', (map { my $t = $_; map { [ $t, $_, "order $t.$_" ] } 1 .. 3 } 1 .. 6),
		[ 3, 50, 'moves to tenant 5' ]));
transaction(insert_rows('orders', [ 5, 10, 'five' ]));
transaction(insert_rows('orders', [ 6, 10, 'six' ]));
transaction(
	set_note('orders', 1, 2, 'changed'),
	change_id('orders', 3, 1, 100),
	delete_row('orders', 3, 50),
	insert_rows('orders', [ 5, 50, 'moved from tenant 3' ]),
	set_note('orders', 2, 1, 'two changed'));
transaction(delete_row('orders', 4, 1), delete_row('orders', 4, 2), insert_rows('orders', [ 4, 20, 'four again' ]));
transaction(
	insert_rows('events', [ 1, 1, 'before truncate' ], [ 2, 1, 'before truncate' ]),
	truncate_table('events'),
	insert_rows('events', [ 1, 2, 'after truncate' ]));
# Large enough for many 4 kB frames per tenant; rows of tenants 2 and 6 interleave.
my $bulk_rows = 4000;
for my $g (1 .. $bulk_rows)
{
	my $t = $g % 2 == 0 ? 2 : 6;
	$note{"orders $t/" . (1000 + $g)} = "bulk $g " . ('x' x 40);
	push @{ $expected{$t} }, "I orders $t/" . (1000 + $g) . " bulk $g " . ('x' x 40);
}
transaction(
	"INSERT INTO orders SELECT CASE WHEN g % 2 = 0 THEN 2 ELSE 6 END, 1000 + g, 'bulk ' || g || ' ' || repeat('x', 40)"
	  . " FROM generate_series(1, $bulk_rows) g",
	set_note('orders', 6, 10, 'six late'));
transaction(delete_row('orders', 5, 10));
transaction(set_note('orders', 1, 1, 'last word'));
my $endpos = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
is($node->safe_psql('postgres', "SELECT count(*) FROM orders") + 0,
	scalar(grep { /^orders / } keys %note), 'the model of the workload matches the table');

# --- reading the JSON -------------------------------------------------------------------------
my %relname = map { $_ => $node->safe_psql('postgres', "SELECT '$_'::regclass::oid") } qw(orders events);
%relname = reverse %relname;

# (tenant, id, note) of a tuple rendered as JSON: by edgeshard-dump, a list of values, bigint, int
# and text in their binary send format; by edgeshard.frames_to_json(), an object of text values
# named by column.
sub row_of
{
	my ($tuple) = @_;
	return @$tuple{qw(tenant_id id note)} if ref $tuple eq 'HASH';
	my @v = map { defined $_ ? pack('H*', $_->{binary}) : undef } @$tuple;
	return (unpack('q>', $v[0]), unpack('l>', $v[1]), $v[2]);
}

# The table of a row message: a relid (edgeshard-dump), or its name (frames_to_json()).
sub table_of
{
	my ($m) = @_;
	return $m->{relation} =~ s/^public\.//r if defined $m->{relation};
	return $relname{ $m->{relid} // 0 } // '?';
}

# Parses JSON lines into frames: [{ header => {...}, messages => [...] }, ...].
sub frames_of
{
	my ($lines) = @_;
	my @frames;
	for my $line (grep { $_ ne '' } split /\n/, $lines)
	{
		my $m = decode_json($line);
		if ($m->{type} eq 'frame') { push @frames, { header => $m, messages => [] }; }
		else { push @{ $frames[-1]{messages} }, $m; }
	}
	return \@frames;
}

# The row changes of a stream per tenant ("*": many-tenants frames), in stream order; rows whose
# tenant is not their frame's are reported as problems.
sub changes_of
{
	my ($frames, $problems) = @_;
	my %changes;
	for my $f (@$frames)
	{
		my $h = $f->{header};
		my $tenant = $h->{many_tenants} ? '*' : $h->{tenant};
		for my $m (@{ $f->{messages} })
		{
			my $table = table_of($m);
			my $c;
			if ($m->{type} eq 'insert')
			{
				my ($t, $id, $n) = row_of($m->{new});
				$c = "I $table $t/$id $n";
			}
			elsif ($m->{type} eq 'update')
			{
				my ($t, $id, $n) = row_of($m->{new});
				$c = "U $table $t/$id $n";
				if ($m->{old_key})
				{
					my ($ot, $oid) = row_of($m->{old_key});
					$c .= " old $ot/$oid";
				}
			}
			elsif ($m->{type} eq 'delete')
			{
				my ($t, $id) = row_of($m->{old_key});
				$c = "D $table $t/$id";
			}
			elsif ($m->{type} eq 'truncate')
			{
				$c = 'T ' . join(',', map { $relname{$_} // '?' } @{ $m->{relids} });
			}
			next unless defined $c;
			push @$problems, "$c in a frame of tenant $tenant"
			  if $c =~ m{^[IUD] \S+ (\d+)/} && $1 ne $tenant;
			push @{ $changes{$tenant} }, $c;
		}
	}
	return \%changes;
}

# Checks the frame groups: per (transaction, tenant) sequence 0..n in stream order, LAST only on
# the last frame, BEGIN in the first and COMMIT in the last; transactions in commit order (the
# frames of two transactions never interleave). Returns the problems found, and the frame counts
# per group.
sub group_problems
{
	my ($frames) = @_;
	my (@problems, %groups, @order);
	my $prev_commit = 0;
	for my $f (@$frames)
	{
		my $h = $f->{header};
		my $key = "$h->{commit_lsn} " . ($h->{many_tenants} ? '*' : $h->{tenant});
		push @order, $key unless $groups{$key};
		push @{ $groups{$key} }, $f;
		my ($hi, $lo) = split m{/}, $h->{commit_lsn};
		my $commit = (hex($hi) << 32) | hex($lo);
		push @problems, "frame of $key after a later commit" if $commit < $prev_commit;
		$prev_commit = $commit;
	}
	my %frames_per_group;
	for my $key (@order)
	{
		my @g = @{ $groups{$key} };
		$frames_per_group{$key} = scalar @g;
		my @seq = map { $_->{header}{sequence} } @g;
		push @problems, "$key: sequences @seq" unless "@seq" eq join(' ', 0 .. $#g);
		my @last = map { $_->{header}{last} ? 1 : 0 } @g;
		push @problems, "$key: LAST flags @last" unless "@last" eq join(' ', (0) x $#g, 1);
		my $first_type = $g[0]{messages}[0]{type} // 'none';
		push @problems, "$key: first frame starts with $first_type" unless $first_type eq 'begin';
		my @commits = map { scalar grep { $_->{type} eq 'commit' } @{ $_->{messages} } } @g;
		push @problems, "$key: COMMIT messages per frame @commits"
		  unless "@commits" eq join(' ', (0) x $#g, 1) && $g[-1]{messages}[-1]{type} eq 'commit';
	}
	return (\@problems, \%frames_per_group);
}

# Streams a slot to $endpos through edgeshard-dump; returns the parsed frames.
sub stream_slot
{
	my ($slot, @options) = @_;
	my ($rc, $out, $err) = run_dump('--dbname', $conn, '--slot', $slot, '--endpos', $endpos,
		map { ('--option', $_) } @options);
	is($rc, 0, "edgeshard-dump --slot $slot --endpos $endpos @options") or diag($err);
	return frames_of($out);
}

# --- the main stream: frame_bytes 4096, LZ4 by default ----------------------------------------
my $main = stream_slot('es_main', 'frame_bytes=4096');
my @problems;
my $changes = changes_of($main, \@problems);
is_deeply(\@problems, [], 'every row change is in a frame of its own tenant');
is_deeply([ sort keys %$changes ], [ sort keys %expected ], 'changes of every tenant, and the TRUNCATE');
for my $t (sort keys %expected)
{
	is_deeply($changes->{$t}, $expected{$t},
		"tenant $t: every row change exactly once, in commit order (" . scalar(@{ $expected{$t} }) . ' changes)');
}
my ($group_problems, $frames_per_group) = group_problems($main);
is_deeply($group_problems, [], 'frame groups: sequence 0..n, LAST only on the last frame, BEGIN first, COMMIT last');
my @big = grep { $frames_per_group->{$_} > 10 } keys %$frames_per_group;
is(scalar(@big), 2, 'the large transaction is cut into continuation frames for both of its tenants')
  or diag(explain($frames_per_group));
my @small_continuations = grep {
	my $h = $_->{header};
	!$h->{last} && !$h->{many_tenants} && (grep { $_ eq "$h->{commit_lsn} $h->{tenant}" } @big)
	  && $h->{raw_length} < 4096
} @$main;
is(scalar(@small_continuations), 0, 'its continuation frames are cut at frame_bytes');
ok((grep { $_->{header}{compression} eq 'lz4' } @$main), 'LZ4 frames by default');

# The TRUNCATE sits between the rows written before and after it.
my @stream = map { @{ $_->{messages} } } @$main;
my %position;    # what => its last position in the stream
for my $i (0 .. $#stream)
{
	my $m = $stream[$i];
	$position{truncate} = $i if $m->{type} eq 'truncate';
	$position{ (row_of($m->{new}))[2] } = $i
	  if $m->{type} eq 'insert' && table_of($m) eq 'events';
}
ok(defined $position{truncate} && $position{'before truncate'} < $position{truncate}
	  && $position{truncate} < $position{'after truncate'},
	'rows written before the TRUNCATE come before it in the stream, rows written after it after it');

# --- compression none: the same row changes, every frame stored raw -------------------------
my $none = stream_slot('es_none', 'frame_bytes=4096', 'compression=none');
is_deeply(changes_of($none, []), $changes, 'compression none: the same row changes');
is(scalar(grep { $_->{header}{compression} ne 'none' } @$none), 0, 'compression none: no frame compressed');
is(scalar(@$none), scalar(@$main), 'compression none: as many frames');

# --- the tenants option -----------------------------------------------------------------------
my $filtered = changes_of(stream_slot('es_tenants', 'tenants=2, 5'), []);
is_deeply($filtered, { map { $_ => $expected{$_} } qw(2 5 *) },
	'tenants 2 and 5: exactly their changes, and the many-tenants frames');

# --- the SQL interface: the same frames -------------------------------------------------------
my $sql_json = $node->safe_psql('postgres', qq{
	SELECT j FROM pg_logical_slot_peek_binary_changes('es_sql', '$endpos', NULL, 'frame_bytes', '4096')
	       WITH ORDINALITY AS c(lsn, xid, data, n),
	     edgeshard.frames_to_json(c.data) WITH ORDINALITY AS f(j, m)
	 ORDER BY n, m});
my $sql = frames_of($sql_json);
is_deeply(changes_of($sql, []), $changes, 'the SQL interface carries the same row changes');
is_deeply([ map { $_->{header} } @$sql ], [ map { $_->{header} } @$main ],
	'the SQL interface sends the same frames, header for header');

# --- pg_recvlogical starts the plugin ---------------------------------------------------------
my $recv_file = $node->basedir . '/recvlogical.out';
$node->command_ok([ 'pg_recvlogical', '-d', $conn, '-S', 'es_recv', '--start', '--no-loop',
		'-E', $endpos, '-o', 'frame_bytes=4096', '-f', $recv_file ],
	'pg_recvlogical streams the edgeshard plugin');
my $recv = -e $recv_file ? slurp_file($recv_file) : '';
ok(length($recv) > 1000 && substr($recv, 0, 4) eq 'ESFR', 'pg_recvlogical wrote frames (' . length($recv) . ' bytes)');

# --- errors -----------------------------------------------------------------------------------
($rc, $out, $err) = run_dump('--dbname', $conn, '--slot', 'no_such_slot', '--endpos', $endpos);
is($rc, 3, 'a missing slot is a connection error');
like($err, qr/replication slot "no_such_slot" does not exist/, '... saying why');
($rc, $out, $err) = run_dump('--dbname', $conn, '--slot', 'es_main', '--option', 'bogus=1', '--endpos', $endpos);
is($rc, 3, 'an unknown plugin option is refused');
like($err, qr/unrecognized edgeshard option "bogus"/, '... by the plugin, naming it');

# What another plugin sends is not frames: refused at the first message, naming its LSN, and
# nothing is confirmed.
($rc, $out, $err) = run_dump('--dbname', $conn, '--slot', 'not_frames', '--endpos', $endpos);
is($rc, 1, 'a slot of another plugin: corrupt stream');
like($err, qr{slot "not_frames": corrupt frame in the XLogData message at [0-9A-F]+/[0-9A-F]+: .*\[bad_magic\]},
	'... at the first message, with its LSN');
is($node->safe_psql('postgres', "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'not_frames'"),
	$not_frames_confirmed, '... confirming nothing');

# A stream that already passed endpos stops at once, confirming nothing new.
($rc, $out, $err) = run_dump('--dbname', $conn, '--slot', 'es_main', '--endpos', $endpos, '--verify');
is($rc, 0, 'streaming a consumed slot again to the same endpos');
like($out, qr/^ok: 0 frames, 0 messages, 0 bytes/, '... finds nothing left');
is($node->safe_psql('postgres', "SELECT confirmed_flush_lsn >= '$endpos' FROM pg_replication_slots WHERE slot_name = 'es_main'"),
	't', 'the slot is confirmed up to endpos');

$node->safe_psql('postgres', "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots");

# --- ES_LONG: the walsender's memory while it streams one huge transaction --------------------
SKIP:
{
	skip 'the 5,000,000-row transaction runs with ES_LONG=1 (scripts/test --long)', 3
	  unless $ENV{ES_LONG};
	my $rows = 5_000_000;
	$node->safe_psql('postgres', "SELECT pg_create_logical_replication_slot('es_long', 'edgeshard')");
	$node->safe_psql('postgres',
		"INSERT INTO orders SELECT 100 + g % 100, 10000000 + g, 'long ' || g FROM generate_series(1, $rows) g");
	my $long_end = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');

	my ($lout, $lerr) = ('', '');
	my $h = IPC::Run::start(
		[ $dump, '--dbname', $conn, '--slot', 'es_long', '--endpos', $long_end, '--verify' ],
		'>', \$lout, '2>', \$lerr, IPC::Run::timeout(1800));
	my $pid = '';
	for (1 .. 600)
	{
		$pid = $node->safe_psql('postgres',
			"SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'es_long' AND active");
		last if $pid ne '' || !$h->pumpable;
		$h->pump_nb;
		select(undef, undef, undef, 0.05);
	}
	# VmHWM only grows: sampling until the client is done (and once more) sees the peak.
	my ($hwm_kb, $samples) = (0, 0);
	my $sample = sub {
		open(my $fh, '<', "/proc/$pid/status") or return;    # the walsender is gone
		while (<$fh>)
		{
			next unless /^VmHWM:\s+(\d+) kB/;
			$hwm_kb = $1 if $1 > $hwm_kb;
			$samples++;
		}
		close $fh;
	};
	while ($pid ne '' && $h->pumpable)
	{
		$sample->();
		$h->pump_nb;
		select(undef, undef, undef, 0.1);
	}
	$sample->() if $pid ne '';
	$h->finish;
	chomp $lout;
	is($h->result(0), 0, "edgeshard-dump streamed the $rows-row transaction") or diag($lerr);
	# One message a row, BEGIN and COMMIT for each of the 100 tenants, and a little schema.
	my ($messages) = $lout =~ /^ok: \d+ frames, (\d+) messages/;
	ok(defined $messages && $messages >= $rows + 200 && $messages < $rows + 300,
		"every row arrived ($lout)");
	my $hwm_mb = sprintf('%.1f', $hwm_kb / 1024);
	note("walsender peak RSS (VmHWM) while streaming $rows rows in one transaction: $hwm_mb MB ($samples samples)");
	cmp_ok($hwm_kb, '<', 256 * 1024, "walsender peak RSS $hwm_mb MB stays under 256 MB");
}

$node->stop;
done_testing();
