# t/WebhookTest.pm: shared helpers of the TAP suite: a cluster with the
# extension preloaded, the loopback receiver, and polling with deadlines
# (never fixed sleeps).
package WebhookTest;

use strict;
use warnings;

use Exporter 'import';
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

our @EXPORT = qw(start_node start_receiver received wait_received wait_until worker_pid
  verify_signatures openssl_hmac_hex $SECRET);

our $SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
my $srcdir = $ENV{TESTDIR} // '.';
my @receivers;

# A started cluster with the extension preloaded and created in postgres.
sub start_node
{
	my ($name, $conf, %opt) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'webhook'
webhook.database_name = 'postgres'
webhook.allow_http = on
webhook.allowed_networks = '127.0.0.1/32'
webhook.poll_interval = '200ms'
} . ($conf // ''));
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION webhook') unless $opt{no_extension};
	return $node;
}

# The pid of the node's delivery worker, waiting for one to run; with
# $old, for one other than that (a restarted worker).
sub worker_pid
{
	my ($node, $old) = @_;
	my $q = "SELECT pid FROM pg_stat_activity WHERE backend_type = 'webhook worker'";
	$q .= " AND pid <> $old" if $old;
	$node->poll_query_until('postgres', "SELECT count(*) = 1 FROM ($q) w")
	  or die "no delivery worker" . ($old ? " replaced $old" : '');
	return $node->safe_psql('postgres', $q);
}

# Starts test/receiver/receiver.js, or with script => 'test/...js' and
# args => [...] another receiver that takes --port and --log the same way
# and writes the port to its log's .port file; returns {url, log, port,
# handle}.
sub start_receiver
{
	my ($name, %opt) = @_;
	my $log = PostgreSQL::Test::Utils::tempdir() . "/$name.jsonl";
	my ($out, $err) = ('', '');
	my @cmd = $opt{script}
	  ? ('node', "$srcdir/$opt{script}", '--port', '0', '--log', $log, @{ $opt{args} // [] })
	  : ('node', "$srcdir/test/receiver/receiver.js", '--port', '0', '--log', $log, '--secret', $SECRET);
	my $h = IPC::Run::start(\@cmd, '>', \$out, '2>', \$err);
	wait_until(sub { -s "$log.port" }, 30, "receiver $name listening") or die "receiver: $err";
	open my $fh, '<', "$log.port" or die;
	my $port = <$fh>;
	close $fh;
	push @receivers, $h;
	return { url => "http://127.0.0.1:$port", log => $log, port => $port, handle => $h };
}

# Receivers die with the test, whatever way it ends.
END
{
	for my $h (@receivers)
	{
		eval { $h->kill_kill(grace => 2); };
	}
}

# Every request the receiver has logged so far, decoded.
sub received
{
	my ($r) = @_;
	my @lines;
	open my $fh, '<', $r->{log} or return [];
	while (my $l = <$fh>)
	{
		next unless $l =~ /\n\z/;    # a line still being written
		push @lines, decode_json($l);
	}
	close $fh;
	return \@lines;
}

# Polls $cond (a code ref) every 50 ms until it is true or $secs pass.
sub wait_until
{
	my ($cond, $secs, $what) = @_;
	my $deadline = time() + ($secs // 60);
	while (time() < $deadline)
	{
		return 1 if $cond->();
		usleep(50_000);
	}
	diag("timed out waiting for " . ($what // 'condition'));
	return 0;
}

# Waits until the receiver has logged requests for which $cond returns true.
sub wait_received
{
	my ($r, $cond, $secs, $what) = @_;
	my $got;
	wait_until(sub { $got = received($r); $cond->($got) }, $secs, $what);
	return $got;
}

# Checks requests' signatures with code that is not ours: each element of
# @checks is [scheme, key, request] (scheme "standard" with a whsec_ secret
# or "ed25519" with a whpk_ key); returns one "ok" or "fail: why" each.
sub verify_signatures
{
	my (@checks) = @_;
	my $in = join '', map {
		encode_json({ scheme => $_->[0], key => $_->[1], headers => $_->[2]{headers}, body => $_->[2]{body} })
		  . "\n"
	} @checks;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'node', "$srcdir/test/receiver/verify.js" ], '<', \$in, '>', \$out, '2>', \$err)
	  or die "verify.js: $err";
	return [ split /\n/, $out ];
}

# Lowercase hex HMAC-SHA256 of $data keyed with the string $key, by the
# openssl command line tool.
sub openssl_hmac_hex
{
	my ($key, $data) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'openssl', 'dgst', '-sha256', '-hmac', $key, '-r' ], '<', \$data, '>', \$out, '2>', \$err)
	  or die "openssl: $err";
	$out =~ /^([0-9a-f]{64})/ or die "openssl said: $out";
	return $1;
}

1;
