# Corrupt edge replicas are refused, never read as data. edgeshard-apply builds the replicas of a
# few tenants from a real primary and is stopped; then, on copies of its data directory, one
# tenant's replica is damaged: a byte flipped in the first or in the last data block of its
# replica file, the file truncated (its footer cut, or half of it gone), the file missing while
# the manifest (checksum intact) names it, the manifest edited (its checksum no longer matches,
# also when the edit names another, missing file). For each, the reader path (edgeshard-replica
# get and scan) and edgeshard-replica verify exit non-zero with a message naming the problem and
# the file, and print no wrong row (a scan that fails in the last block printed only true rows
# before it); the other tenants stay readable and verify says so. Finally edgeshard-apply is
# restarted (twice) on a data directory with corrupt tenants while the primary writes to every
# tenant: it keeps running and applying the healthy tenants, reports each corrupt one
# (event=tenant_broken, in /metrics), writes nothing over a tenant refused at open, and never
# compacts a damaged file into a new base.
# (The reader's C API, libedgeshard_reader, has no command-line front end to run here; it shares
# TenantReplica with edgeshard-replica, and its unit tests are in edge_apply/tests.)
use strict;
use warnings;
use File::Copy qw(copy move);
use File::Path qw(make_path);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use lib $ENV{TESTDIR} ? "$ENV{TESTDIR}/t" : 't';
use RelayHarness;
use ReplicaCheck;

my $token = 'corruption-test-token';
$ENV{EDGESHARD_RELAY_TOKEN} = $token;
my @tenants = (1 .. 7);
my $nrows = 1500;

# --- replicas built by the daemon -----------------------------------------------------------------
my ($node, $conn) = start_primary();
my $relay = start_relay(name => 'corrupt', data_dir => test_dir() . '/relay', upstream => $conn, token => $token,
	slot => 'relay_corrupt');
kill_at_exit(sub { $relay->{handle} });
wait_until(sub { (metric($relay, 'edgeshard_relay_upstream_connected') // 0) == 1 }, 'relay upstream');
# compact_deltas = 2: the second flush of a tenant merges its deltas into one base file.
my $apply = apply_daemon(shards => [ [ 's1', $relay ] ], compact_deltas => 2);
launch_apply($apply, 1);
my $nodes = { s1 => $node };
my %owner = map { $_ => $node } @tenants;
my @tables = ([ 'items', 'id' ]);

# Rows of about 90 bytes that LZ4 barely compresses: several 16 KiB data blocks per tenant.
$node->safe_psql('postgres', "INSERT INTO items SELECT t, g, md5(g::text) || md5((g * t)::text)
	FROM generate_series(1, " . scalar(@tenants) . ") t, generate_series(1, $nrows) g");
ok(wait_apply_caught_up($apply, $nodes, 'the rows to be applied'), 'rows applied');
$node->safe_psql('postgres', "INSERT INTO items SELECT t, $nrows + 1, 'last' FROM generate_series(1, "
	  . scalar(@tenants) . ") t");
ok(wait_apply_caught_up($apply, $nodes, 'the last rows to be applied'), 'last rows applied');
is(stop_apply($apply), 0, 'edgeshard-apply stops cleanly');
my $pristine = $apply->{data_dir};
compare_replicas(data_dir => $pristine, tenants => \@tenants, owner => \%owner, tables => \@tables,
	what => 'the replicas built');
verify_replicas($pristine, scalar(@tenants), 'the replicas built');

# Tenant 1's replica is one base file with several data blocks.
my $manifest1 = slurp_file("$pristine/tenants/1/manifest");
my @files1 = $manifest1 =~ /^file (\w+) (\S+) /mg;
is_deeply([ $files1[0] ], ['base'], 'tenant 1: one base file') or diag($manifest1);
my $base = $files1[1];
my $schema_offset = footer_u64("$pristine/tenants/1/$base", 0);
cmp_ok($schema_offset - 32, '>', 4 * 16384, "tenant 1: data blocks take $schema_offset bytes");
my $primary1 = primary_rows($node, 'items', 'id')->{1};
my @true_rows = split /\n/, $primary1;

# A u64 of a replica file's footer (the last 96 bytes), at offset $at in it.
sub footer_u64
{
	my ($path, $at) = @_;
	open my $fh, '<:raw', $path or die "cannot open $path: $!";
	seek $fh, (-s $path) - 96 + $at, 0;
	read $fh, my $bytes, 8;
	close $fh;
	return unpack('Q<', $bytes);
}

# Flips bits of the byte at $offset of a file.
sub flip_byte
{
	my ($path, $offset) = @_;
	open my $fh, '+<:raw', $path or die "cannot open $path: $!";
	seek $fh, $offset, 0;
	read $fh, my $byte, 1;
	seek $fh, $offset, 0;
	print $fh chr(ord($byte) ^ 0x5a);
	close $fh;
}

# Replaces a manifest's text by $edit applied to it (the checksum line left as it was).
sub edit_file
{
	my ($path, $edit) = @_;
	my $text = slurp_file($path);
	my $new = $edit->($text);
	die "edit of $path changed nothing" if $new eq $text;
	open my $fh, '>:raw', $path or die "cannot write $path: $!";
	print $fh $new;
	close $fh;
}

# A copy of the pristine data directory (tenants and shard state) under tmp_check/$name.
sub copy_data_dir
{
	my ($name) = @_;
	my $to = test_dir() . "/$name";
	for my $dir (glob("$pristine/*"), glob("$pristine/*/*"))
	{
		next unless -d $dir;
		make_path($to . substr($dir, length $pristine));
	}
	for my $file (glob("$pristine/*/*"), glob("$pristine/*/*/*"))
	{
		next unless -f $file;
		copy($file, $to . substr($file, length $pristine)) or die "cannot copy $file: $!";
	}
	return $to;
}

# --- each damage on a copy, read back -------------------------------------------------------------
my $first_key = 1;
my $last_key = $nrows + 1;
my @cases = (
	{ name => 'flipped byte in the first data block', damage => sub { flip_byte("$_[0]/$base", 32 + 7) },
	  error => qr/\Q$base\E: corrupt: block checksum mismatch at offset 32\b/, bad_key => $first_key,
	  good_key => $last_key, scan_rows => 0 },
	# The last data block ends where the schema block starts; its block trailer is the 16 bytes
	# before that.
	{ name => 'flipped byte in the last data block', damage => sub { flip_byte("$_[0]/$base", $schema_offset - 16 - 5) },
	  error => qr/\Q$base\E: corrupt: block checksum mismatch at offset \d+/, bad_key => $last_key,
	  good_key => $first_key, scan_rows => 'prefix' },
	{ name => 'file truncated by 10 bytes', damage => sub { truncate("$_[0]/$base", (-s "$_[0]/$base") - 10) or die $! },
	  error => qr/\Q$base\E: corrupt: no footer at the end of the file: truncated/, bad_key => $first_key, scan_rows => 0 },
	{ name => 'file truncated to half', damage => sub { truncate("$_[0]/$base", int((-s "$_[0]/$base") / 2)) or die $! },
	  error => qr/\Q$base\E: corrupt: no footer at the end of the file: truncated/, bad_key => $last_key, scan_rows => 0 },
	{ name => 'file missing, named by a manifest whose checksum matches', damage => sub { move("$_[0]/$base", "$_[0]/../gone.esr") or die $! },
	  error => qr/\Q$base\E: io: cannot open the file.*No such file or directory/, bad_key => $first_key, scan_rows => 0 },
	{ name => 'manifest edited, checksum not matching', damage => sub { edit_file("$_[0]/manifest", sub { $_[0] =~ s/^generation (\d+)$/'generation ' . ($1 + 1)/mer }) },
	  error => qr{tenants/1/manifest: manifest fails its checksum}, bad_key => $first_key, scan_rows => 0 },
	{ name => 'manifest naming a missing file, checksum not matching', damage => sub { edit_file("$_[0]/manifest", sub { $_[0] =~ s/\Q$base\E/base-00000000000000ff.esr/r }) },
	  error => qr{tenants/1/manifest: manifest fails its checksum}, bad_key => $first_key, scan_rows => 0 },
);

my $case_no = 0;
for my $case (@cases)
{
	$case_no++;
	my $dd = copy_data_dir("case$case_no");
	$case->{damage}->("$dd/tenants/1");
	my $what = "$case->{name}";

	my ($status, $out, $err) = replica_cli('get', $dd, 1, 'items', 1, $case->{bad_key});
	ok($status != 0 && $out eq '', "$what: get refused (exit $status), no row printed");
	like($err, $case->{error}, "$what: get names the problem and the file");

	if (defined $case->{good_key})
	{
		# A block is checked on first use: the intact blocks still serve their true rows.
		($status, $out, $err) = replica_cli('get', $dd, 1, 'items', 1, $case->{good_key});
		my $key = $case->{good_key};
		my ($want) = grep { /"id":$key[,}]/ } @true_rows;
		is("$status $out", "0 $want\n", "$what: get of a key in an intact block returns its true row");
	}

	($status, $out, $err) = replica_cli('scan', $dd, 1, 'items');
	my @got = grep { /\S/ } split /\n/, $out;
	ok($status != 0, "$what: scan refused (exit $status)");
	like($err, $case->{error}, "$what: scan names the problem and the file");
	if ($case->{scan_rows} eq 'prefix')
	{
		# Rows of the blocks before the damaged one, then the error: every row printed is true.
		ok(@got > 0 && @got < @true_rows && join("\n", @got) eq join("\n", @true_rows[ 0 .. $#got ]),
			"$what: scan printed only true rows, in order, before the damaged block (" . scalar(@got) . ' of '
			  . scalar(@true_rows) . ')');
	}
	else
	{
		is(scalar(@got), 0, "$what: scan printed no row");
	}

	($status, $out, $err) = replica_cli('verify', $dd, 1);
	is($status, 1, "$what: verify of the tenant exits 1");
	like($err, $case->{error}, "$what: verify names the problem and the file");
	unlike($out, qr/tenant 1: ok/, "$what: verify does not call the tenant ok");

	# The whole data directory: the damaged tenant fails, the others are checked and ok.
	($status, $out, $err) = replica_cli('verify', $dd);
	my $ok = scalar(grep { /^tenant \d+: ok$/ } split /\n/, $out);
	ok($status == 1 && $ok == @tenants - 1 && $err =~ $case->{error},
		"$what: verify of the data directory exits 1 and checks the " . (@tenants - 1) . " other tenants ($ok ok)")
	  or diag("exit $status\n$out\n$err");
	is(replica_rows($dd, 2, 'items'), primary_rows($node, 'items', 'id')->{2}, "$what: tenant 2 still reads true rows");
}

# --- the daemon restarted on corrupt tenants ------------------------------------------------------
# Tenant 1: a flipped byte in its first data block; 2: its file truncated; 3: its manifest fails
# its checksum; 4: its manifest (checksum intact) names a file that is gone; 5, 6 and 7 intact.
# The same subscriber name as the daemon that built them.
my $bad_dd = copy_data_dir('restart');
my %base_of = map { $_ => (slurp_file("$bad_dd/tenants/$_/manifest") =~ /^file base (\S+) /m)[0] } 1 .. 4;
flip_byte("$bad_dd/tenants/1/$base_of{1}", 32 + 7);
truncate("$bad_dd/tenants/2/$base_of{2}", 1000) or die $!;
edit_file("$bad_dd/tenants/3/manifest", sub { $_[0] =~ s/^generation (\d+)$/'generation ' . ($1 + 1)/mer });
move("$bad_dd/tenants/4/$base_of{4}", "$bad_dd/gone.esr") or die $!;
my %before = map { $_ => dir_state("$bad_dd/tenants/$_") } 1 .. 4;
my @healthy = (5 .. 7);
my ($b1, $b2, $b4) = @base_of{ 1, 2, 4 };

# The names and sizes of a tenant directory's files, and its manifest's text (the daemon's
# `broken` marker aside: it is checked on its own).
sub dir_state
{
	my ($dir) = @_;
	my @files = map { s{.*/}{}r . ' ' . (-s $_) } grep { !m{/broken$} } sort glob("$dir/*");
	return join("\n", @files) . "\n" . slurp_file("$dir/manifest");
}

my $again = apply_daemon(name => 'edge1', tag => 'restart', data_dir => $bad_dd, shards => [ [ 's1', $relay ] ],
	compact_deltas => 2);

# Starts the daemon on the damaged data directory, writes $n transactions to every tenant (each
# a delta; the second makes a tenant compact), and checks that the daemon keeps running and
# applies the healthy tenants up to the primary.
sub run_on_damaged
{
	my ($what, $n, $first) = @_;
	launch_apply($again, 1);
	# Each batch is waited for before the next, so that each becomes a delta of its own (flushes
	# may otherwise merge them into one, and the second delta is what makes a tenant compact).
	my $caught_up = 1;
	for my $k ($first .. $first + $n - 1)
	{
		$node->safe_psql('postgres', join('', map {
				"BEGIN; UPDATE items SET v = 'after $k' WHERE tenant_id = $_ AND id IN ($first_key, $last_key);\n"
				  . "INSERT INTO items VALUES ($_, 10000 + $k, 'new $k'); DELETE FROM items WHERE tenant_id = $_ AND id = $k + 1; COMMIT;\n"
			} @tenants));
		my $end = lsn_num($node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()'));
		# The healthy tenants reach the primary's position (broken tenants do not hold them back).
		$caught_up &&= wait_until(sub {
				for my $t (@healthy)
				{
					my ($status, $out) = replica_cli('stats', $bad_dd, $t);
					return 0 unless $status == 0 && $out =~ m{shard s1: applied (\S+)} && lsn_num($1) >= $end;
				}
				return 1;
			}, 'the healthy tenants to catch up', 30, 1);
	}
	# Tenant 1's damage is met by its compaction (on the compaction thread), installed by a later
	# flush round: wait for the four broken tenants rather than for a fixed time.
	wait_until(sub { (apply_metric($again, 'edgeshard_apply_broken_tenants') // 0) >= 4 },
		'the damaged tenants to be found broken', 30, 1);
	usleep(300_000);    # a few more flush rounds
	ok($again->{handle}->pumpable, "$what: edgeshard-apply keeps running with corrupt tenants in its data directory");
	ok($caught_up, "$what: the healthy tenants are applied up to the primary");
	compare_replicas(data_dir => $bad_dd, tenants => \@healthy, owner => \%owner, tables => \@tables,
		what => "$what: healthy tenants next to corrupt ones");
	cmp_ok(apply_metric($again, 'edgeshard_apply_broken_tenants') // -1, '==', 4, "$what: four broken tenants in /metrics");
	is(stop_apply($again), 0, "$what: edgeshard-apply stops cleanly");
}

run_on_damaged('restarted on damaged tenants', 2, 1);
my $log = slurp_file($again->{log});
for my $case ([ 1, qr/\Q$b1\E: corrupt: block checksum mismatch/ ], [ 2, qr/\Q$b2\E: corrupt: no footer/ ],
	[ 3, qr/manifest fails its checksum/ ], [ 4, qr/\Q$b4\E: io: cannot open the file.*No such file/ ])
{
	my ($t, $re) = @$case;
	my @lines = grep { /event=tenant_broken tenant=$t\b/ } split /\n/, $log;
	ok(@lines && $lines[0] =~ $re, "tenant $t: the daemon reports it broken, naming the problem and the file")
	  or diag(join("\n", @lines[0 .. ($#lines < 4 ? $#lines : 4)]) || 'no tenant_broken line');
}
for my $t (2 .. 4)
{
	is(dir_state("$bad_dd/tenants/$t"), $before{$t}, "tenant $t: refused at open, nothing written over its replica");
}
# Each broken tenant carries the daemon's marker (readers then trust only its own manifest's
# positions, not the shard position files): it says why.
for my $t (1 .. 4)
{
	my $marker = "$bad_dd/tenants/$t/broken";
	ok(-f $marker && slurp_file($marker) =~ /\S/, "tenant $t: a broken marker says why (" . (-f $marker ? slurp_file($marker) =~ s/\n.*//sr : 'none') . ')');
}
# A damaged data block is found when it is read: deltas of later transactions may go on top of
# the file until a compaction reads that block, but the damaged file is never merged into a new
# base, and the replica still fails verify.
like(slurp_file("$bad_dd/tenants/1/manifest"), qr/^file base \Q$b1\E /m,
	'tenant 1: the damaged base file was not compacted into a new one');
my ($status, $out, $err) = replica_cli('verify', $bad_dd, 1);
ok($status == 1 && $err =~ /\Q$b1\E: corrupt: block checksum mismatch/, 'tenant 1: verify still refuses it');
my @other = grep { /level=error/ && !/event=tenant_broken/ } split /\n/, $log;
is(scalar(@other), 0, 'no other error logged') or diag(join("\n", @other[0 .. ($#other < 4 ? $#other : 4)]));

# Once more: a restart finds the same tenants broken and serves the others (no crash loop).
run_on_damaged('restarted again', 2, 3);

is(stop_relay($relay), 0, 'relay stops cleanly');
$node->stop;
done_testing();
