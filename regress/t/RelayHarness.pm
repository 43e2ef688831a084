# Helpers of the relay TAP tests: start edgeshard-relay daemons on free loopback ports (data under
# the test's tmp_check, logs under its log directory), stop or kill -9 them, read their /metrics,
# run edgeshard-dump subscribers, and compare frame lines (edgeshard-dump --format frames).
package RelayHarness;

use strict;
use warnings;
use Exporter 'import';
use File::Path qw(make_path);
use IO::Socket::INET;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

our @EXPORT = qw(start_primary start_relay stop_relay kill_relay relay_metrics metric wait_until lsn_num
  start_subscriber stop_subscriber frame_lines tenant_lines relay_log);

# LSN text X/Y as a number.
sub lsn_num
{
	my ($lsn) = @_;
	my ($hi, $lo) = split m{/}, $lsn;
	return hex($hi) * 4294967296 + hex($lo);
}

# Starts shard primary s1 for the relay tests: logical decoding with the edgeshard plugin allowed,
# the extension, this node registered as shard s1, and table items(tenant_id, id, v) distributed
# by tenant_id. Returns the node and its connection string.
sub start_primary
{
	my $node = PostgreSQL::Test::Cluster->new('primary');
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
	my $conninfo = $conn =~ s/'/''/gr;
	$node->safe_psql('postgres', qq{
		CREATE EXTENSION edgeshard;
		SELECT edgeshard.add_shard('s1', '$conninfo');
		CREATE TABLE items (tenant_id bigint, id int, v text, PRIMARY KEY (tenant_id, id));
		SELECT edgeshard.distribute_table('items', 'tenant_id');
	});
	return ($node, $conn);
}

# Polls $cond (a sub) every 100 ms until it returns true; after the default timeout fails the
# test with $what and returns 0 (with $quiet it only returns 0: the caller asserts).
sub wait_until
{
	my ($cond, $what, $seconds, $quiet) = @_;
	$seconds //= $PostgreSQL::Test::Utils::timeout_default;
	for (my $i = 0; $i < $seconds * 10; $i++)
	{
		return 1 if $cond->();
		usleep(100_000);
	}
	fail("timed out waiting for $what") unless $quiet;
	return 0;
}

# Starts a relay. Options: name (required), upstream or upstream_relay, token, and any other
# setting of edgeshard-relay as key => value. Returns a hash: name, port, metrics_port, data_dir,
# conf, log, handle.
sub start_relay
{
	my (%o) = @_;
	my $name = delete $o{name};
	my %r = (name => $name);
	$r{data_dir} = delete $o{data_dir} // "$PostgreSQL::Test::Utils::tmp_check/relay_$name";
	$r{port} = delete $o{port} // PostgreSQL::Test::Cluster::get_free_port();
	$r{metrics_port} = PostgreSQL::Test::Cluster::get_free_port();
	$r{log} = "$PostgreSQL::Test::Utils::log_path/relay_$name.log";
	$r{conf} = "$PostgreSQL::Test::Utils::tmp_check/relay_$name.conf";
	my %settings = (
		name => $name,
		data_dir => $r{data_dir},
		listen => "127.0.0.1:$r{port}",
		metrics_listen => "127.0.0.1:$r{metrics_port}",
		sync_interval_ms => 5,
		keepalive_interval_ms => 200,
		status_interval_ms => 500,
		reconnect_min_ms => 50,
		reconnect_max_ms => 500,
		%o);
	open my $fh, '>', $r{conf} or die "cannot write $r{conf}: $!";
	for my $k (sort keys %settings)
	{
		my $v = $settings{$k} =~ s/'/''/gr;
		print $fh "$k = '$v'\n";
	}
	close $fh;
	$r{opts} = \%o;
	_launch(\%r);
	return \%r;
}

# IPC::Run handles of processes a test started (relays, daemons, readers): the END block kills
# those still running, so that a test that dies half-way leaves nothing behind.
my @at_exit;

# Adds a handle (or a sub returning the current handle) for the END block to kill.
sub kill_at_exit { push @at_exit, @_; }
push @EXPORT, 'kill_at_exit';

END
{
	local $?;
	for my $h (@at_exit)
	{
		my $handle = ref $h eq 'CODE' ? $h->() : $h;
		next unless $handle && eval { $handle->pumpable };
		eval { $handle->signal('KILL'); $handle->finish };
	}
}

# Starts (or restarts) the relay process of $r and waits until it serves.
sub _launch
{
	my ($r) = @_;
	$r->{handle} = IPC::Run::start([ 'edgeshard-relay', '--config', $r->{conf} ],
		'>>', $r->{log}, '2>>', $r->{log});
	kill_at_exit(sub { $r->{handle} }) unless $r->{at_exit}++;
	wait_until(sub { defined relay_metrics($r) }, "relay $r->{name} to serve /metrics");
}

# Restarts a relay that was stopped or killed, with the same configuration and data.
sub restart_relay
{
	my ($r) = @_;
	_launch($r);
}
push @EXPORT, 'restart_relay';

# Stops a relay with SIGTERM and waits for it; returns its exit status.
sub stop_relay
{
	my ($r) = @_;
	$r->{handle}->signal('TERM');
	$r->{handle}->finish;
	return $r->{handle}->result(0);
}

# Kills a relay with SIGKILL.
sub kill_relay
{
	my ($r) = @_;
	$r->{handle}->signal('KILL');
	eval { $r->{handle}->finish };
}

# The /metrics of a daemon (relay or apply) on 127.0.0.1:$port as a hash "name{labels}" =>
# value; undef when it does not answer.
sub http_metrics
{
	my ($port) = @_;
	my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
		Timeout => 2) or return undef;
	print $sock "GET /metrics HTTP/1.0\r\n\r\n";
	local $/;
	my $resp = <$sock>;
	close $sock;
	return undef unless defined $resp && $resp =~ /^HTTP\/1.0 200/;
	my %m;
	for my $line (split /\n/, $resp)
	{
		next if $line =~ /^#/;
		$m{$1} = $2 if $line =~ /^(edgeshard_\S+)\s+(\S+)$/;
	}
	return \%m;
}
push @EXPORT, 'http_metrics';

# The relay's /metrics as a hash "name{labels}" => value; undef when it does not answer.
sub relay_metrics
{
	my ($r) = @_;
	return http_metrics($r->{metrics_port});
}

# One metric of a relay: metric($r, 'edgeshard_relay_durable_lsn') or with a subscriber label.
sub metric
{
	my ($r, $name, $subscriber) = @_;
	my $m = relay_metrics($r) or return undef;
	my $labels = "relay=\"$r->{name}\"";
	$labels .= ",subscriber=\"$subscriber\"" if defined $subscriber;
	return $m->{"$name\{$labels\}"};
}

# The relay's log text.
sub relay_log
{
	my ($r) = @_;
	return PostgreSQL::Test::Utils::slurp_file($r->{log});
}

# The edgeshard-dump --relay command of a subscriber: name, relay, and optional tenants (array),
# start, endpos, position_file.
sub subscriber_command
{
	my (%o) = @_;
	my @cmd = ('edgeshard-dump', '--relay', "127.0.0.1:$o{relay}{port}", '--name', $o{name},
		'--format', 'frames');
	push @cmd, '--tenants', join(',', @{ $o{tenants} }) if $o{tenants} && @{ $o{tenants} };
	push @cmd, '--start', $o{start} if defined $o{start};
	push @cmd, '--endpos', $o{endpos} if defined $o{endpos};
	push @cmd, '--position-file', $o{position_file} if defined $o{position_file};
	return @cmd;
}

# Starts edgeshard-dump --relay in the background: name, relay, and optional tenants (array),
# start, endpos, position_file, token. Returns a hash with handle, out (scalar ref), err.
sub start_subscriber
{
	my (%o) = @_;
	my ($out, $err) = ('', '');
	my @cmd = subscriber_command(%o);
	local $ENV{EDGESHARD_RELAY_TOKEN} = $o{token} // $ENV{EDGESHARD_RELAY_TOKEN};
	my %s = (%o, out => \$out, err => \$err);
	$s{handle} = IPC::Run::start(\@cmd, '>', \$out, '2>', \$err);
	kill_at_exit($s{handle});
	return \%s;
}

# Waits for a subscriber to end (or stops it with SIGTERM when $term); returns its exit status.
sub stop_subscriber
{
	my ($s, $term) = @_;
	$s->{handle}->signal('TERM') if $term;
	eval { $s->{handle}->finish };
	return $s->{handle}->result(0);
}

# Frame lines "commit tenant sequence last checksum" as arrays, from text.
sub frame_lines
{
	my ($text) = @_;
	return [ map { [ split / / ] } grep { /\S/ } split /\n/, $text ];
}

# The lines of tenant frames (not MANY_TENANTS) with commit LSN >= $from, for the tenants in
# $tenants (hash ref; undef: every tenant), as "commit tenant seq last checksum" strings.
sub tenant_lines
{
	my ($lines, $from, $tenants) = @_;
	return [ map { join ' ', @$_ }
		  grep { $_->[1] ne '*' && lsn_num($_->[0]) >= $from && (!$tenants || $tenants->{ $_->[1] }) }
		  @$lines ];
}

# --- Helpers of 004/005 ------------------------------------------------------------------------

use IO::Select;

# Like tenant_lines, with an exclusive upper bound: frames with $from <= commit LSN < $to.
sub lines_between
{
	my ($lines, $from, $to, $tenants) = @_;
	return [ grep { lsn_num((split / /)[0]) < $to } @{ tenant_lines($lines, $from, $tenants) } ];
}
push @EXPORT, 'lines_between';

# A number as LSN text X/Y.
sub lsn_text
{
	my ($n) = @_;
	return sprintf('%X/%X', int($n / 4294967296), $n % 4294967296);
}
push @EXPORT, 'lsn_text';

# A raw TCP connection to a relay's subscriber port (dies when it cannot connect).
sub raw_connect
{
	my ($r) = @_;
	my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $r->{port}, Proto => 'tcp',
		Timeout => 5) or die "cannot connect to relay $r->{name}: $!";
	binmode $sock;
	return $sock;
}
push @EXPORT, 'raw_connect';

# The bytes of a HELLO message (PROTOCOL.md). Options: name, token, start (number), min_version,
# max_version, flags, tenants (array), magic.
sub hello_message
{
	my (%o) = @_;
	my @tenants = @{ $o{tenants} // [] };
	my $body = pack('V v v v/a* v/a* Q< V V', $o{magic} // 0x50525345, $o{min_version} // 1,
		$o{max_version} // 1, $o{name}, $o{token} // '', $o{start} // 0, $o{flags} // 0,
		scalar @tenants);
	$body .= pack('v/a*', $_) for @tenants;
	return pack('a V', 'H', length $body) . $body;
}
push @EXPORT, 'hello_message';

# Writes all of $bytes to $sock; false when the peer is gone.
sub raw_send
{
	my ($sock, $bytes) = @_;
	local $SIG{PIPE} = 'IGNORE';
	my $off = 0;
	while ($off < length $bytes)
	{
		my $n = syswrite($sock, $bytes, length($bytes) - $off, $off);
		return 0 unless defined $n && $n > 0;
		$off += $n;
	}
	return 1;
}
push @EXPORT, 'raw_send';

# Reads exactly $n bytes from $sock within $deadline (epoch seconds); undef on EOF, error or
# timeout (then $$why says which).
sub _read_exactly
{
	my ($sock, $n, $deadline, $why) = @_;
	my $buf = '';
	my $sel = IO::Select->new($sock);
	while (length $buf < $n)
	{
		my $left = $deadline - Time::HiRes::time();
		if ($left <= 0) { $$why = 'timeout'; return undef; }
		next unless $sel->can_read($left);
		my $got = sysread($sock, $buf, $n - length $buf, length $buf);
		if (!defined $got) { $$why = "error: $!"; return undef; }
		if ($got == 0) { $$why = length $buf ? 'eof inside a message' : 'eof'; return undef; }
	}
	return $buf;
}

# Reads one relay message: returns (type, body), or () with $$why set ('eof', 'timeout', ...).
sub read_message
{
	my ($sock, $timeout, $why) = @_;
	my $dummy;
	$why //= \$dummy;
	my $deadline = Time::HiRes::time() + ($timeout // 10);
	my $head = _read_exactly($sock, 5, $deadline, $why);
	return () unless defined $head;
	my ($type, $len) = unpack('a V', $head);
	my $body = $len ? _read_exactly($sock, $len, $deadline, $why) : '';
	return () unless defined $body;
	return ($type, $body);
}
push @EXPORT, 'read_message';

# The code and message of an ERROR body.
sub error_fields
{
	my ($body) = @_;
	return unpack('v/a* v/a*', $body);
}
push @EXPORT, 'error_fields';

# Reads messages until an ERROR (skipping others) and then the end of the stream. Returns a
# hash: code, message (undef when no ERROR came), closed (1 when EOF followed), skipped (number of
# other messages), why (how reading ended).
sub expect_error
{
	my ($sock, $timeout) = @_;
	my %res = (skipped => 0, closed => 0);
	my $why = '';
	my $deadline = Time::HiRes::time() + ($timeout // 10);
	for (;;)
	{
		my ($type, $body) = read_message($sock, $deadline - Time::HiRes::time(), \$why);
		last unless defined $type;
		if ($type eq 'E')
		{
			@res{qw(code message)} = error_fields($body);
			my ($t2) = read_message($sock, $deadline - Time::HiRes::time(), \$why);
			$res{closed} = !defined $t2 && $why eq 'eof' ? 1 : 0;
			last;
		}
		$res{skipped}++;
	}
	$res{why} = $why;
	return \%res;
}
push @EXPORT, 'expect_error';

# The relay's log lines (array) matching a regular expression.
sub relay_log_lines
{
	my ($r, $re) = @_;
	return [ grep { /$re/ } split /\n/, relay_log($r) ];
}
push @EXPORT, 'relay_log_lines';

# Like start_subscriber, but standard output goes to a file (option file, required; appended to),
# so a long stream never blocks on a full pipe while the test does not pump. The hash's out is
# read from the file by subscriber_output.
sub start_file_subscriber
{
	my (%o) = @_;
	my $err = '';
	my @cmd = subscriber_command(%o);
	local $ENV{EDGESHARD_RELAY_TOKEN} = $o{token} // $ENV{EDGESHARD_RELAY_TOKEN};
	my %s = (%o, err => \$err);
	$s{handle} = IPC::Run::start(\@cmd, '>>', $o{file}, '2>', \$err);
	kill_at_exit($s{handle});
	return \%s;
}
push @EXPORT, 'start_file_subscriber';

# What a start_file_subscriber subscriber printed so far.
sub subscriber_output
{
	my ($s) = @_;
	return -e $s->{file} ? PostgreSQL::Test::Utils::slurp_file($s->{file}) : '';
}
push @EXPORT, 'subscriber_output';

1;
