# Point-in-time recovery with edgeshard-wal, on real clusters:
#  - a primary archives with archive_library = 'edgeshard'; `edgeshard-wal backup` takes a base
#    backup into the same repository (parts of 8 MiB, manifest written after the stop segment is
#    archived); a failing pg_basebackup exits 1 and leaves no backup directory behind;
#  - after more writes, a remembered time T and the table's checksum at T, more writes and a DROP
#    TABLE: `list` shows the backup, `verify` exits 0, `restore-backup` into a new data directory
#    refuses a non-empty target, and recovery with restore_command = 'edgeshard-wal restore ...'
#    and recovery_target_time = T brings the table back with exactly that checksum and row count;
#  - a second backup and `expire --keep 1`: the first backup goes, and only WAL older than the
#    second backup's start segment; verify stays clean and a recovery from the second backup
#    replays the archive to its end;
#  - a flipped byte in an archived segment makes `verify` exit 1 naming the file.
use strict;
use warnings;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my ($wal_tool) = grep { -x $_ } map { "$_/edgeshard-wal" } split /:/, $ENV{PATH};
BAIL_OUT('edgeshard-wal is not on PATH') unless $wal_tool;

my $tmp = PostgreSQL::Test::Utils::tempdir();
my $repo = "$tmp/repo";
mkdir $repo or die "mkdir $repo: $!";

# Runs edgeshard-wal; returns (exit status, stdout, stderr).
sub run_wal_tool {
	my ($out, $err) = ('', '');
	IPC::Run::run([ $wal_tool, @_ ], '>', \$out, '2>', \$err);
	return ($? >> 8, $out, $err);
}

# The backup ids of the repository, sorted.
sub backup_ids {
	opendir(my $d, "$repo/backups") or return ();
	my @ids = sort grep { /^\d{8}T\d{6}Z$/ } readdir $d;
	closedir $d;
	return @ids;
}

# The WAL file names archived, sorted.
sub archived_names {
	opendir(my $d, "$repo/wal") or return ();
	my @names = sort map { s/\.eswa$//r } grep { /^[0-9A-F]{8}.*\.eswa$/ } readdir $d;
	closedir $d;
	return @names;
}

# Switches to a new WAL segment and waits until the one switched from is archived.
sub switch_and_wait {
	my ($node) = @_;
	my $seg = $node->safe_psql('postgres', 'SELECT pg_walfile_name(pg_switch_wal())');
	ok($node->poll_query_until('postgres',
			"SELECT last_archived_wal >= '$seg' FROM pg_stat_archiver"),
		"$seg archived");
	return $seg;
}

# The table's checksum and row count.
sub table_state {
	my ($node) = @_;
	return $node->safe_psql('postgres',
		"SELECT md5(string_agg(t::text, ',' ORDER BY id)) || ' ' || count(*) FROM tbl t");
}

# A new node recovered from a backup of the repository: restore-backup into its data directory,
# then the recovery settings (extra lines appended), recovery.signal, start.
sub recover_node {
	my ($name, $backup, $extra) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	my ($rc, $out, $err) = run_wal_tool('restore-backup', '--repo', $repo, '--backup', $backup,
		'--target', $node->data_dir);
	is($rc, 0, "restore-backup $backup into $name") or diag($err);
	like($out, qr/recovery\.signal/, 'restore-backup prints the next steps');
	$node->append_conf('postgresql.conf', qq(
port = ${\ $node->port }
archive_mode = off
restore_command = '$wal_tool restore --repo $repo %f %p'
$extra
));
	open(my $f, '>', $node->data_dir . '/recovery.signal') or die $!;
	close $f;
	$node->start;
	ok($node->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()'),
		"$name is out of recovery");
	return $node;
}

# --- a primary archiving into the repository ------------------------------------------------------
my $node = PostgreSQL::Test::Cluster->new('primary');
$node->init(allows_streaming => 1);
$node->append_conf('postgresql.conf', qq(
archive_mode = on
archive_library = 'edgeshard'
edgeshard.archive_dir = '$repo'
wal_keep_size = '1GB'
));
$node->start;
my $conninfo = $node->connstr('postgres');
$node->safe_psql('postgres',
	"CREATE TABLE tbl (id int PRIMARY KEY, v text);
	 INSERT INTO tbl SELECT g, md5(g::text) FROM generate_series(1, 10000) g;");

# A failing pg_basebackup: exit 1, nothing left behind.
my ($rc, $out, $err) = run_wal_tool('backup', '--repo', $repo, '--conninfo',
	"host=$tmp/no-such-socket-dir port=1 dbname=postgres");
is($rc, 1, 'backup: pg_basebackup failing exits 1');
like($err, qr/pg_basebackup failed/, 'and says so');
is(scalar(backup_ids()), 0, 'and removes the partial backup');

($rc, $out, $err) = run_wal_tool('backup', '--repo', $repo, '--conninfo', $conninfo,
	'--label', 'first', '--part-size-mb', '8');
is($rc, 0, 'backup exits 0') or diag($err);
like($out, qr/^backup \d{8}T\d{6}Z complete: \d+ parts/, 'backup reports the backup');
my ($first) = backup_ids();
ok(defined $first && -f "$repo/backups/$first/backup.manifest", 'the first backup has a manifest');
ok(-f "$repo/backups/$first/base.tar.00002.eswa" || -f "$repo/backups/$first/base.tar.00002",
	'the tar stream is cut into several parts');

# More writes; T and the state at T; more writes and a DROP TABLE.
$node->safe_psql('postgres',
	"INSERT INTO tbl SELECT g, 'second ' || g FROM generate_series(10001, 15000) g;
	 UPDATE tbl SET v = 'updated' WHERE id % 7 = 0;");
switch_and_wait($node);
sleep 1;
my $target_time = $node->safe_psql('postgres', 'SELECT now()');
my $state_at_t = table_state($node);
sleep 1;
$node->safe_psql('postgres',
	"INSERT INTO tbl SELECT g, 'third ' || g FROM generate_series(15001, 16000) g;
	 DELETE FROM tbl WHERE id < 100;");
$node->safe_psql('postgres', 'DROP TABLE tbl');
switch_and_wait($node);

# --- list, verify ---------------------------------------------------------------------------------
($rc, $out, $err) = run_wal_tool('list', '--repo', $repo);
is($rc, 0, 'list exits 0');
note($out);
like($out, qr/backup \Q$first\E  complete\n  label     first\n/, 'list shows the backup and its label');
like($out, qr/pitr      from .* to the end of [0-9A-F]{24}/, 'and its recovery window');
($rc, $out, $err) = run_wal_tool('verify', '--repo', $repo);
is($rc, 0, 'verify exits 0 on a sound repository') or diag($out . $err);
like($out, qr/^ok: \d+ archive files, 1 backups, 0 problem/m, 'verify says ok');
note($out);

# --- restore-backup refuses a non-empty target ---------------------------------------------------
mkdir "$tmp/busy";
open(my $f, '>', "$tmp/busy/file") or die $!;
close $f;
($rc, $out, $err) = run_wal_tool('restore-backup', '--repo', $repo, '--target', "$tmp/busy");
is($rc, 2, 'restore-backup refuses a non-empty target');
like($err, qr/not an empty directory/, 'and says why');

# --- point-in-time recovery to T -------------------------------------------------------------------
my $pitr = recover_node('pitr', $first, qq(
recovery_target_time = '$target_time'
recovery_target_action = 'promote'
));
is(table_state($pitr), $state_at_t, 'the table is back with exactly its checksum and row count at T');
like(PostgreSQL::Test::Utils::slurp_file($pitr->logfile), qr/recovery stopping before commit/,
	'recovery stopped at the target');
$pitr->stop;

# --- a second backup, expire --keep 1 ----------------------------------------------------------------
$node->safe_psql('postgres',
	"CREATE TABLE tbl2 AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 2000) g");
($rc, $out, $err) = run_wal_tool('backup', '--repo', $repo, '--conninfo', $conninfo,
	'--label', 'second');
is($rc, 0, 'second backup exits 0') or diag($err);
my (undef, $second) = backup_ids();
ok(defined $second, 'a second backup');
$node->safe_psql('postgres', 'INSERT INTO tbl2 SELECT g, md5(g::text) FROM generate_series(2001, 3000) g');
switch_and_wait($node);
my $tbl2_count = $node->safe_psql('postgres', 'SELECT count(*) FROM tbl2');

my $manifest = PostgreSQL::Test::Utils::slurp_file("$repo/backups/$second/backup.manifest");
my ($start2) = $manifest =~ /^start_wal = ([0-9A-F]{24})$/m;
ok($start2, "the second backup starts at $start2");
($rc, $out, $err) = run_wal_tool('expire', '--repo', $repo, '--keep', '1', '--dry-run');
is($rc, 0, 'expire --dry-run exits 0');
like($out, qr/would remove backup \Q$first\E/, 'and says what it would remove');
is_deeply([ backup_ids() ], [ $first, $second ], 'without removing it');
($rc, $out, $err) = run_wal_tool('expire', '--repo', $repo, '--keep', '1');
is($rc, 0, 'expire --keep 1 exits 0') or diag($err);
like($out, qr/removed backup \Q$first\E/, 'expire prints the removed backup');
note($out);
like($out, qr/removed wal [0-9A-F]{24}/, 'and the removed WAL');
is_deeply([ backup_ids() ], [$second], 'only the second backup is left');
my @left = archived_names();
my @older = grep { /^[0-9A-F]{24}/ && substr($_, 0, 24) lt $start2 } @left;
is_deeply(\@older, [], 'no WAL older than the second backup start is left');
ok((grep { $_ eq $start2 } @left), 'its start segment is kept');
($rc, $out, $err) = run_wal_tool('verify', '--repo', $repo);
is($rc, 0, 'verify is clean after expire') or diag($out . $err);

my $pitr2 = recover_node('pitr2', 'latest', '');
is($pitr2->safe_psql('postgres', 'SELECT count(*) FROM tbl2'), $tbl2_count,
	'recovery from the second backup replays the archive to its end');
$pitr2->stop;

# --- a flipped byte in an archived segment ---------------------------------------------------------
my ($victim) = grep { /^[0-9A-F]{24}$/ } archived_names();
my $path = "$repo/wal/$victim.eswa";
open(my $fh, '+<', $path) or die "open $path: $!";
binmode $fh;
seek($fh, 200, 0);
read($fh, my $byte, 1);
seek($fh, 200, 0);
print $fh chr(ord($byte) ^ 0x40);
close $fh;
($rc, $out, $err) = run_wal_tool('verify', '--repo', $repo);
is($rc, 1, 'verify exits 1 for a flipped byte');
like($out, qr/bad: .*\Q$victim\E\.eswa/, 'naming the file');
note($out);

$node->stop;
done_testing();
