# The reader processes of the edge-replica TAP tests, and their seeded random-number generator.
# Kept apart from ReplicaCheck.pm: a reader runs as its own perl process (perl -MReplicaReader
# -e 'ReplicaReader::main(...)') and must not load PostgreSQL::Test::Utils or Test::More, whose
# start-up and END blocks belong to the test process.
package ReplicaReader;

use strict;
use warnings;
use IPC::Run;
use Time::HiRes;

# The main loop of a reader process (started by ReplicaCheck::start_readers): reads until the
# stop file exists, the test process ($parent) is gone, or $max_seconds passed, and writes its
# counts to $out every second and at the end. $spec (a file) names the data directory, the table,
# the column summed, the rows each tenant has, and each tenant's sum: a read of tenant t is either
# empty (not replicated yet: not counted as a read, and a violation once t's rows were seen) or
# exactly that many rows, all of tenant t, whose column adds up to t's sum; anything else is a
# violation. A failing edgeshard-replica run counts as an error.
sub main
{
	my ($spec, $stop, $out, $parent, $seed, $max_seconds) = @_;
	my (%cfg, %sum, @tenants, %seen);
	open my $fh, '<', $spec or die "cannot read $spec: $!";
	while (my $line = <$fh>)
	{
		chomp $line;
		my @f = split /\t/, $line;
		if ($f[0] eq 'sum') { $sum{ $f[1] } = $f[2]; push @tenants, $f[1]; }
		else { $cfg{ $f[0] } = $f[1]; }
	}
	close $fh;
	my $rng = ReplicaReader::Rng->new($seed);
	my %c = (reads => 0, empty => 0, violations => 0, errors => 0);
	my @examples;
	my $started = Time::HiRes::time();
	my $written = 0;
	my $write = sub {
		my ($finished) = @_;
		open my $o, '>', "$out.tmp" or return;
		print $o "$_=$c{$_}\n" for sort keys %c;
		print $o "example $_\n" for @examples;
		print $o "finished=1\n" if $finished;
		close $o;
		rename "$out.tmp", $out;
	};
	my $note = sub { push @examples, substr($_[0] =~ s/\n/ /gr, 0, 600) if @examples < 10; };
	my ($col, $want_rows) = ($cfg{column}, $cfg{rows});
	my $running = sub { !-e $stop && getppid() == $parent && Time::HiRes::time() - $started < $max_seconds };
	while ($running->())
	{
		# Each pass in a new random order.
		my @order = @tenants;
		for (my $i = $#order; $i > 0; $i--)
		{
			my $j = $rng->below($i + 1);
			@order[ $i, $j ] = @order[ $j, $i ];
		}
		for my $t (@order)
		{
			last unless $running->();
			my ($text, $err) = ('', '');
			IPC::Run::run([ 'edgeshard-replica', 'scan', $cfg{data_dir}, $t, $cfg{table} ],
				'>', \$text, '2>', \$err);
			my $status = $? >> 8;
			my @rows = grep { /\S/ } split /\n/, $text;
			if ($status == 3 || ($status == 1 && $err =~ /no table "/) || ($status == 0 && !@rows))
			{
				# Not there yet; but rows once seen never vanish.
				$c{empty}++;
				if ($seen{$t})
				{
					$c{violations}++;
					$note->("tenant $t: no rows any more (exit $status): $err");
				}
			}
			elsif ($status != 0)
			{
				$c{errors}++;
				$note->("tenant $t: edgeshard-replica scan exit $status: $err");
			}
			else
			{
				$c{reads}++;
				$seen{$t} = 1;
				my ($total, $foreign) = (0, 0);
				for my $row (@rows)
				{
					$foreign++ unless $row =~ /"tenant_id":\Q$t\E[,}]/;
					$total += $1 if $row =~ /"\Q$col\E":(-?\d+)/;
				}
				if (scalar(@rows) != $want_rows || $total != $sum{$t} || $foreign)
				{
					$c{violations}++;
					$note->("tenant $t: " . scalar(@rows) . " rows (want $want_rows), sum $total (want $sum{$t})"
						  . ($foreign ? ", $foreign rows of another tenant" : '') . ': '
						  . join(' ', @rows));
				}
			}
			if (Time::HiRes::time() - $written >= 1)
			{
				$write->(0);
				$written = Time::HiRes::time();
			}
		}
	}
	$write->(1);
	return 0;
}

# A small deterministic generator (xorshift32), so that a seed gives the same sequence whatever
# else calls Perl's rand.
package ReplicaReader::Rng;

# A generator started from $seed.
sub new
{
	my ($class, $seed) = @_;
	my $x = ($seed * 2654435761 + 0x9E3779B9) % 4294967296;
	$x = 0x12345678 if $x == 0;
	my $self = bless { x => $x }, $class;
	$self->next32 for 1 .. 8;
	return $self;
}

# The next 32-bit value.
sub next32
{
	my ($self) = @_;
	my $x = $self->{x};
	$x ^= ($x << 13) & 0xFFFFFFFF;
	$x ^= $x >> 17;
	$x ^= ($x << 5) & 0xFFFFFFFF;
	$self->{x} = $x;
	return $x;
}

# An integer in [0, $n).
sub below { my ($self, $n) = @_; return $self->next32 % $n; }

# A number in [$lo, $hi).
sub uniform { my ($self, $lo, $hi) = @_; return $lo + ($hi - $lo) * $self->next32 / 4294967296; }

# One element of an array ref.
sub pick { my ($self, $list) = @_; return $list->[ $self->below(scalar @$list) ]; }

# A key of %$weights chosen with those weights (keys in sorted order, for determinism).
sub weighted
{
	my ($self, $weights) = @_;
	my @keys = sort keys %$weights;
	my $total = 0;
	$total += $weights->{$_} for @keys;
	my $r = $self->uniform(0, $total);
	for my $k (@keys)
	{
		return $k if $r < $weights->{$k};
		$r -= $weights->{$k};
	}
	return $keys[-1];
}

1;
