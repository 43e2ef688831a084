# WAL archiving with archive_library = 'edgeshard' and recovery with edgeshard-wal restore, on real
# clusters:
#  - archive_library set but edgeshard.archive_dir not: the log says what to set, nothing is
#    archived; setting it and reloading starts archiving;
#  - segments land compressed in the repository, restore to exactly the bytes of pg_wal, and
#    edgeshard.archive_status agrees with pg_stat_archiver (counts, bytes in and out, ratio);
#  - a segment archived again (its .done turned back into .ready, as after a crash before the
#    archiver recorded success) succeeds; a second cluster archiving into the same repository is
#    refused for a name with different content (SH010, log message, failed_count, the file kept);
#    a missing and an unwritable directory fail with messages saying what to do, then archiving
#    resumes once fixed;
#  - edgeshard-wal restore refuses a file with one flipped byte (exit 255, message naming the file,
#    no output file), exits 1 silently for a file not archived, 255 for a missing repository;
#  - a base backup recovers to the archive's end with restore_command = 'edgeshard-wal restore ...'
#    and, promoted, archives its timeline history file;
#  - the archiver killed (kill -9) in the middle of bursts of segments, LZ4HC level 9 so that each
#    takes a while: after the crash restarts, archiving completes, every file in the repository
#    decodes and matches pg_wal, temporary files are never taken for archive files;
#  - a torn status file is reported as corrupt (XX001) and replaced at the next archived segment.
use strict;
use warnings;
use File::Compare qw(compare);
use File::Copy qw(copy);
use File::Path qw(make_path);
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my ($wal_tool) = grep { -x $_ } map { "$_/edgeshard-wal" } split /:/, $ENV{PATH};
BAIL_OUT('edgeshard-wal is not on PATH') unless $wal_tool;

my $tmp = PostgreSQL::Test::Utils::tempdir();
my $repo = "$tmp/repo";
mkdir $repo or die "mkdir $repo: $!";
my $scratch = "$tmp/scratch";
mkdir $scratch;

# Runs edgeshard-wal; returns (exit status, stdout, stderr).
sub run_wal_tool {
	my ($out, $err) = ('', '');
	IPC::Run::run([ $wal_tool, @_ ], '>', \$out, '2>', \$err);
	return ($? >> 8, $out, $err);
}

# The WAL file names archived in a repository, sorted.
sub archived_names {
	my ($dir) = @_;
	opendir(my $d, "$dir/wal") or return ();
	my @names = sort map { s/\.eswa$//r } grep { /^[0-9A-F]{8}.*\.eswa$/ } readdir $d;
	closedir $d;
	return @names;
}

# The temporary files in a repository.
sub temp_files {
	my ($dir) = @_;
	opendir(my $d, "$dir/wal") or return ();
	my @names = grep { /^\.tmp\./ } readdir $d;
	closedir $d;
	return @names;
}

# The bytes of a file.
sub bytes_of { return PostgreSQL::Test::Utils::slurp_file($_[0]); }

# The WAL file the server writes now.
sub current_segment {
	my ($node) = @_;
	return $node->safe_psql('postgres', 'SELECT pg_walfile_name(pg_current_wal_lsn())');
}

# Writes some compressible rows, switches to a new segment; returns the segment switched from.
sub fill_and_switch {
	my ($node, $rows) = @_;
	my $seg = current_segment($node);
	$node->safe_psql('postgres',
		"INSERT INTO t SELECT g, 'tenant ' || g % 50, repeat('x', 80) FROM generate_series(1, $rows) g;
		 SELECT pg_switch_wal();");
	return $seg;
}

# Waits until no WAL file waits for archiving.
sub wait_nothing_ready {
	my ($node, $what) = @_;
	ok($node->poll_query_until('postgres',
			"SELECT count(*) = 0 FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'"),
		"archiving completes ($what)");
}

# Restores every archive file of $dir with edgeshard-wal; returns the names that failed, the names
# whose restored bytes differ from the node's pg_wal (when pg_wal still has them), and the total
# size of what was restored.
sub check_repository {
	my ($node, $dir) = @_;
	my (@failed, @different);
	my $total = 0;
	for my $name (archived_names($dir)) {
		my $dest = "$scratch/$name";
		my ($rc, $out, $err) = run_wal_tool('restore', '--repo', $dir, $name, $dest);
		if ($rc != 0) {
			push @failed, "$name ($rc: $err)";
			next;
		}
		my $orig = $node->data_dir . "/pg_wal/$name";
		push @different, $name if -f $orig && compare($orig, $dest) != 0;
		$total += -s $dest;
		unlink $dest;
	}
	return (\@failed, \@different, $total);
}

# --- a primary with archive_library = 'edgeshard' but no edgeshard.archive_dir ------------------
my $node = PostgreSQL::Test::Cluster->new('primary');
$node->init(allows_streaming => 1);
$node->append_conf('postgresql.conf', qq(
archive_mode = on
archive_library = 'edgeshard'
wal_keep_size = '4GB'
max_wal_size = '4GB'
restart_after_crash = on
log_error_verbosity = verbose
));
$node->start;
$node->safe_psql('postgres',
	'CREATE EXTENSION edgeshard; CREATE TABLE t (id int, tenant text, filler text)');
my $pgdata = $node->data_dir;

my $first = fill_and_switch($node, 1000);
$node->wait_for_log(qr/LOG:  55000: edgeshard\.archive_dir is not set: no wal file is archived/);
like(bytes_of($node->logfile),
	qr/HINT:  Set edgeshard\.archive_dir to the archive repository directory and reload the configuration\./,
	'unset archive_dir: the log says what to set');
sleep 1;
is($node->safe_psql('postgres', 'SELECT archived_count || \'/\' || failed_count FROM pg_stat_archiver'),
	'0/0', 'nothing archived, nothing failed');
ok(-f "$pgdata/pg_wal/archive_status/$first.ready", "$first waits for archiving");
my @none = archived_names($repo);
is(scalar(@none), 0, 'the repository is empty');

$node->append_conf('postgresql.conf', "edgeshard.archive_dir = '$repo'");
$node->reload;
wait_nothing_ready($node, 'after setting edgeshard.archive_dir and reloading');
ok(-f "$repo/wal/$first.eswa", "$first archived once configured");

# The base backup the recovery below starts from.
$node->backup('base');

# --- archived segments: compressed, exact, counted ----------------------------------------------
my @segs = map { fill_and_switch($node, 30000) } 1 .. 3;
wait_nothing_ready($node, 'three more segments');
for my $seg (@segs) {
	my $size = -s "$repo/wal/$seg.eswa";
	ok(defined $size && $size < 16 * 1024 * 1024 / 3, "$seg stored compressed (" . ($size // 'none') . ' bytes)');
}
my ($failed, $different, $bytes_in) = check_repository($node, $repo);
is_deeply($failed, [], 'every archive file restores');
is_deeply($different, [], 'and restores to the bytes of pg_wal');
my @temps = temp_files($repo);
is(scalar(@temps), 0, 'no temporary file left');

my $bytes_out = 0;
$bytes_out += -s "$repo/wal/$_.eswa" for archived_names($repo);
is( $node->safe_psql(
		'postgres', qq{
	SELECT s.archived_count = a.archived_count, s.last_archived_wal = a.last_archived_wal,
	       s.failed_count = 0 AND s.last_failed_wal IS NULL, s.bytes_in = $bytes_in,
	       s.bytes_out = $bytes_out, s.compression_ratio > 3,
	       abs(extract(epoch FROM s.last_archived_time - a.last_archived_time)) < 2,
	       s.stats_since <= s.last_archived_time
	  FROM edgeshard.archive_status s, pg_stat_archiver a}),
	't|t|t|t|t|t|t|t', 'archive_status agrees with pg_stat_archiver and the repository');
note $node->safe_psql('postgres', 'SELECT archived_count, bytes_in, bytes_out, compression_ratio FROM edgeshard.archive_status');

# --- the same segment again: same content succeeds ----------------------------------------------
my $again = $segs[0];
my $before = bytes_of("$repo/wal/$again.eswa");
my $archived_before = $node->safe_psql('postgres', 'SELECT archived_count FROM pg_stat_archiver');
rename("$pgdata/pg_wal/archive_status/$again.done", "$pgdata/pg_wal/archive_status/$again.ready")
  or die "rename: $!";
fill_and_switch($node, 100);  # wakes the archiver, which rescans archive_status
wait_nothing_ready($node, "$again again");
is($node->safe_psql('postgres', 'SELECT archived_count - ' . $archived_before . ', failed_count FROM pg_stat_archiver'),
	'2|0', 'a segment archived twice with the same content succeeds');
is(bytes_of("$repo/wal/$again.eswa"), $before, 'and its archive file is untouched');

# --- a second cluster archiving into the same repository ---------------------------------------
my $other = PostgreSQL::Test::Cluster->new('other');
$other->init(allows_streaming => 1);
$other->append_conf('postgresql.conf', qq(
archive_mode = on
archive_library = 'edgeshard'
edgeshard.archive_dir = '$repo'
log_error_verbosity = verbose
));
$other->start;
$other->safe_psql('postgres', 'CREATE EXTENSION edgeshard; CREATE TABLE t (id int, tenant text, filler text)');
my $clash = fill_and_switch($other, 500);
ok(-f "$repo/wal/$clash.eswa", "the repository holds the primary's $clash");
my $primary_copy = bytes_of("$repo/wal/$clash.eswa");
$other->wait_for_log(
	qr/WARNING:  SH010: could not archive "$clash": archive file "\Q$repo\E\/wal\/$clash\.eswa" already exists with different content/);
like(bytes_of($other->logfile), qr/HINT:  Each cluster needs its own edgeshard\.archive_dir/,
	'the refusal says why');
ok($other->poll_query_until('postgres', 'SELECT failed_count > 0 FROM pg_stat_archiver'),
	'pg_stat_archiver counts the failure');
is($other->safe_psql('postgres',
		"SELECT archived_count, failed_count > 0, last_failed_wal, last_failure_reason LIKE '%already exists with different content%'
		   FROM edgeshard.archive_status"),
	"0|t|$clash|t", 'archive_status shows the failure and its reason');
is(bytes_of("$repo/wal/$clash.eswa"), $primary_copy, "the primary's $clash is never overwritten");

# A missing directory, then an unwritable one: refused with what to do; then archiving resumes.
my $elsewhere = "$tmp/other_repo";
$other->append_conf('postgresql.conf', "edgeshard.archive_dir = '$elsewhere'");
my $offset = -s $other->logfile;
$other->reload;
$offset = $other->wait_for_log(
	qr/WARNING:  58P01: could not archive "$clash": archive directory "\Q$elsewhere\E" does not exist\n(?:.*\n)?.*HINT:  Create the directory \(or mount the repository\)/,
	$offset);
pass('a missing archive directory is refused with a hint');
SKIP: {
	skip 'permissions do not apply to root', 1 if $> == 0;
	mkdir $elsewhere;
	chmod 0555, $elsewhere;
	$other->reload;  # wakes the archiver
	$other->wait_for_log(
		qr/WARNING:  42501: could not archive "$clash": could not create directory "\Q$elsewhere\E\/wal": Permission denied\n(?:.*\n)?.*HINT:  Make edgeshard\.archive_dir writable/,
		$offset);
	pass('an unwritable archive directory is refused with a hint');
}
mkdir $elsewhere;
chmod 0755, $elsewhere;
$other->reload;
wait_nothing_ready($other, 'once the directory is there and writable');
ok(-f "$elsewhere/wal/$clash.eswa", "the second cluster's $clash archived into its own repository");
$other->stop;

# --- edgeshard-wal restore: corrupt, missing, no repository -------------------------------------
my $bad_repo = "$tmp/bad_repo";
make_path("$bad_repo/wal");
copy("$repo/wal/$segs[1].eswa", "$bad_repo/wal/$segs[1].eswa") or die "copy: $!";
{
	open(my $fh, '+<', "$bad_repo/wal/$segs[1].eswa") or die $!;
	binmode $fh;
	my $pos = int((-s $fh) / 2);
	seek($fh, $pos, 0);
	read($fh, my $byte, 1);
	seek($fh, $pos, 0);
	print $fh chr(ord($byte) ^ 0x20);
	close $fh;
}
my $dest = "$scratch/RECOVERYXLOG";
my ($rc, $out, $err) = run_wal_tool('restore', '--repo', $bad_repo, $segs[1], $dest);
is($rc, 255, 'a flipped byte: restore exits 255 (PostgreSQL stops recovery)');
like($err, qr/could not restore "$segs[1]": archive file "\Q$bad_repo\E\/wal\/$segs[1]\.eswa": .*checksum mismatch/,
	'the message names the file');
ok(!-e $dest, 'and nothing is handed to PostgreSQL');
is(scalar(grep { !/^\./ } PostgreSQL::Test::Utils::slurp_dir($scratch)), 0, 'not even a temporary file');

($rc, $out, $err) = run_wal_tool('restore', '--repo', $repo, '0000000100000000000000FF', $dest);
is("$rc|$out|$err", '1||', 'a file not archived: exit 1, silently');
ok(!-e $dest, 'no output');
($rc, $out, $err) = run_wal_tool('restore', '--repo', "$tmp/absent", $segs[1], $dest);
is($rc, 255, 'a missing repository is not the end of the archive');
like($err, qr/archive directory "\Q$tmp\E\/absent" does not exist/, 'and says so');

# --- recovery of the base backup from the archive -----------------------------------------------
my $last = fill_and_switch($node, 5000);
wait_nothing_ready($node, 'before the recovery');
my $rows = $node->safe_psql('postgres', 'SELECT count(*) FROM t');
my $restored = PostgreSQL::Test::Cluster->new('restored');
$restored->init_from_backup($node, 'base', has_restoring => 0);
$restored->append_conf('postgresql.conf', qq(
restore_command = '$wal_tool restore --repo $repo %f %p'
recovery_target_timeline = 'latest'
));
$restored->set_recovery_mode;
$restored->start;
ok($restored->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()'), 'archive recovery ends');
is($restored->safe_psql('postgres', 'SELECT count(*) FROM t'), $rows, 'with every row of the archive');
like(bytes_of($restored->logfile), qr/restored log file "$last" from archive/,
	'replayed from the archive up to its last segment');
# Promoted to timeline 2, it archives (into the same repository) its history file.
ok($restored->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM pg_ls_archive_statusdir() WHERE name = '00000002.history.ready'"),
	'the restored server archives');
ok(-f "$repo/wal/00000002.history.eswa", 'its timeline history file is archived');
($rc, $out, $err) = run_wal_tool('restore', '--repo', $repo, '00000002.history', "$scratch/history");
is($rc, 0, 'and restores');
is(bytes_of("$scratch/history"), bytes_of($restored->data_dir . '/pg_wal/00000002.history'), 'exactly');
$restored->stop;

# --- the archiver killed while archiving bursts of segments ---------------------------------------
# LZ4HC level 9 and segments full of hex text: each takes a while to archive. Each round writes a
# burst of segments, waits until the archiver has a temporary file open (it is writing an archive
# file), and kills it; the postmaster restarts everything (restart_after_crash).
$node->append_conf('postgresql.conf', 'edgeshard.archive_compression_level = 9');
$node->reload;
my $counted_before = $node->safe_psql('postgres', 'SELECT archived_count FROM edgeshard.archive_status');
my $postmaster = (split /\n/, bytes_of("$pgdata/postmaster.pid"))[0];

# The archiver's pid (a child of the postmaster), or undef.
sub archiver_pid {
	my $ps = `ps -o pid=,args= --ppid $postmaster`;
	return $ps =~ /^\s*(\d+)\s+postgres: .*archiver/m ? $1 : undef;
}

my $mid_write = 0;
for my $round (1 .. 3) {
	my %old = map { $_ => 1 } temp_files($repo);
	$node->safe_psql('postgres',
		"INSERT INTO t SELECT g, md5(g::text), md5((g * 7)::text) || md5((g * 13)::text)
		   FROM generate_series(1, 60000) g; SELECT pg_switch_wal();\n" x 5);
	my $killed = 0;
	for (1 .. 10_000) {
		if (grep { !$old{$_} } temp_files($repo)) {
			my $pid = archiver_pid();
			$killed = kill 'KILL', $pid if $pid;
			last;
		}
		usleep(500);
	}
	$mid_write += $killed;
	ok($node->poll_query_until('postgres', 'SELECT true'), "round $round: the server is back after the crash");
}
ok($mid_write > 0, "the archiver was killed while writing an archive file ($mid_write times)");
wait_nothing_ready($node, 'after the crashes');
my @done = sort map { s/\.done$//r } grep { /^[0-9A-F]{24}\.done$/ } PostgreSQL::Test::Utils::slurp_dir("$pgdata/pg_wal/archive_status");
is_deeply([ grep { !-f "$repo/wal/$_.eswa" } @done ], [], 'every segment marked done is in the repository');
($failed, $different) = check_repository($node, $repo);
is_deeply($failed, [], 'every archive file decodes and verifies after the crashes');
is_deeply($different, [], 'and holds exactly its segment');
cmp_ok($node->safe_psql('postgres', 'SELECT archived_count FROM edgeshard.archive_status'), '>', $counted_before,
	'archive_status keeps counting across the crashes');

# The killed writers' temporary files are never taken for archive files (above); once older than a
# minute, the archiver removes them (at its first file after a start or a reload).
my @leftovers = temp_files($repo);
note scalar(@leftovers) . ' temporary files left by the crashes';
my $long_ago = time - 7200;
utime($long_ago, $long_ago, map { "$repo/wal/$_" } @leftovers);
$offset = -s $node->logfile;
$node->reload;
fill_and_switch($node, 100);
wait_nothing_ready($node, 'after the reload');
@temps = temp_files($repo);
is(scalar(@temps), 0, 'stale temporary files are swept');
like(bytes_of($node->logfile, $offset), qr/removed \d+ stale temporary files from the wal archive/, 'and the sweep is logged')
  if @leftovers;

# --- a torn status file ---------------------------------------------------------------------------
PostgreSQL::Test::Utils::append_to_file("$pgdata/edgeshard_archive.status", "torn");
my ($ret, $stdout, $stderr) = $node->psql('postgres', "\\set VERBOSITY verbose\nSELECT * FROM edgeshard.archive_status");
like($stderr, qr/XX001: archive status file "edgeshard_archive\.status" is corrupt/, 'a torn status file is reported as corrupt');
fill_and_switch($node, 100);
ok($node->poll_query_until('postgres', 'SELECT archived_count >= 1 FROM edgeshard.archive_status'),
	'the archiver replaces it with new counters');

$node->stop;
done_testing();
