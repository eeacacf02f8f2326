# Crashes lose nothing: a delivery worker SIGKILLed again and again in the
# middle of a burst, and a server stopped in immediate mode, still deliver
# every committed event, each verified; nothing is left in flight.  A fast
# shutdown is not held up by requests waiting on their (60 s) timeout, and
# the deliveries those requests carried come back after the restart.
# Events of transactions that rolled back, or that were still open when the
# server crashed, are never sent.
#
# What at-least-once allows, and what this bounds: a request the receiver
# saw whose outcome was not yet committed when the server went down is sent
# again.  The worker records the outcome of every finished request before it
# starts new ones, so at most webhook.max_connections requests are sent and
# unrecorded at any time: each crash may add at most that many duplicates
# (claimed rows not yet started are never sent, so the 2 x max_connections
# a claim may hold do not count).  With requests held 50 ms at the receiver
# a crash usually catches all of them there, so the bound is usually met
# exactly: any other source of duplicates would exceed it.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;

use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use WebhookTest;

my $MAXCONN = 32;
my $BURST = 5000;

my $node = start_node('crash', qq{
restart_after_crash = on
webhook.max_connections = $MAXCONN
});
my $rcv = start_receiver('crash');

# Requests logged so far for one path; cheap enough to poll (no decoding).
sub count_path
{
	my ($path) = @_;
	my $n = 0;
	open my $fh, '<', $rcv->{log} or return 0;
	while (my $l = <$fh>)
	{
		$n++ if $l =~ /\n\z/ && index($l, qq{"path":"$path"}) >= 0;
	}
	close $fh;
	return $n;
}

# Decodes what $path received: request count, distinct webhook-ids,
# unverified requests, and the distinct values of data.i.
sub summary
{
	my ($path) = @_;
	my @reqs = grep { $_->{path} eq $path } @{ received($rcv) };
	my (%ids, %is);
	for my $r (@reqs)
	{
		$ids{ $r->{id} }++;
		$is{ decode_json($r->{body})->{data}{i} } = 1;
	}
	return {
		requests => scalar(@reqs),
		ids => scalar(keys %ids),
		unverified => scalar(grep { !$_->{verified} } @reqs),
		values => scalar(grep { $is{$_} } 1 .. $BURST),
	};
}

# Publishes the burst of 5,000 events of type $type in one transaction.
sub publish_burst
{
	my ($type) = @_;
	$node->safe_psql('postgres',
		"SELECT count(webhook_publish('$type', jsonb_build_object('i', i))) FROM generate_series(1, $BURST) i");
}

# An open transaction that has published 100 t.ghost events: the crash that
# comes next must abort it.
sub open_ghost_transaction
{
	my $s = $node->background_psql('postgres');
	$s->query_safe("BEGIN; SELECT count(webhook_publish('t.ghost', jsonb_build_object('g', i))) FROM generate_series(1, 100) i");
	return $s;
}

# 100 t.ghost events rolled back.
sub rolled_back_ghosts
{
	$node->safe_psql('postgres', q{
		BEGIN;
		SELECT count(webhook_publish('t.ghost', jsonb_build_object('g', i))) FROM generate_series(1, 100) i;
		ROLLBACK;
	});
}

# Asserts that all of $path's burst was delivered once at least, verified,
# with at most $maxdup duplicates, and that no delivery is left in flight.
sub check_burst
{
	my ($what, $ep, $path, $maxdup) = @_;
	ok($node->poll_query_until('postgres',
			"SELECT count(*) = $BURST FROM webhook_deliveries WHERE endpoint_id = $ep AND status = 'delivered'"),
		"$what: all $BURST deliveries recorded as delivered")
	  or diag($node->safe_psql('postgres',
			"SELECT status, count(*) FROM webhook_deliveries WHERE endpoint_id = $ep GROUP BY 1"));
	is($node->safe_psql('postgres', "SELECT count(*) FROM webhook_deliveries WHERE status = 'in_flight'"),
		'0', "$what: no delivery left in flight");
	is($node->safe_psql('postgres', "SELECT count(*) FROM webhook_attempts WHERE endpoint_id = $ep AND ok"),
		$BURST, "$what: one successful attempt recorded per delivery");
	my $s = summary($path);
	is($s->{ids}, $BURST, "$what: $BURST distinct webhook-ids received");
	is($s->{values}, $BURST, "$what: every event's data arrived");
	is($s->{unverified}, 0, "$what: every request verified by the reference library");
	my $dup = $s->{requests} - $s->{ids};
	note("$what: $s->{requests} requests, $dup duplicates (bound $maxdup)");
	cmp_ok($dup, '<=', $maxdup, "$what: duplicates within $maxdup");
}

$node->safe_psql('postgres', qq{
	SELECT webhook_create_endpoint('crash', '$rcv->{url}/crash/slow/50', event_types => '{t.crash}',
	                               secret => '$SECRET');
	SELECT webhook_create_endpoint('stop', '$rcv->{url}/stop/slow/50', event_types => '{t.stop}',
	                               secret => '$SECRET');
	SELECT webhook_create_endpoint('ghost', '$rcv->{url}/ghost/ok', event_types => '{t.ghost,t.marker}',
	                               secret => '$SECRET');
});
my %ep = map { split /\|/ } split /\n/,
  $node->safe_psql('postgres', 'SELECT name, id FROM webhook_endpoints');

# 1. SIGKILL of the worker, three times during a burst.  Each kill makes the
# postmaster reinitialize (restart_after_crash); the next kill waits for the
# new worker and for it to make progress.
my $KILLS = 3;
my $pid = worker_pid($node);
my $ghosts = open_ghost_transaction();
publish_burst('t.crash');
rolled_back_ghosts();
my $target = 0;
for my $k (1 .. $KILLS)
{
	$target = count_path('/crash/slow/50') + 500;
	wait_until(sub { count_path('/crash/slow/50') >= $target }, 120, "progress before kill $k")
	  or last;
	my $offset = -s $node->logfile;
	my $seen = count_path('/crash/slow/50');
	my $delivered = $node->safe_psql('postgres',
		"SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $ep{crash} AND status = 'delivered'");
	ok(kill('KILL', $pid), "kill $k: SIGKILL worker $pid");
	cmp_ok($delivered, '<', $BURST, "kill $k: mid-burst ($seen requests seen, $delivered delivered)");
	$node->wait_for_log(qr/all server processes terminated; reinitializing/, $offset);
	$pid = worker_pid($node, $pid);
}
# the open transaction died with the first crash
eval { $ghosts->quit };
check_burst('SIGKILL', $ep{crash}, '/crash/slow/50', $KILLS * $MAXCONN);

# 2. Immediate stop during a burst, then start (crash recovery).
$ghosts = open_ghost_transaction();
publish_burst('t.stop');
rolled_back_ghosts();
$target = 1000;
wait_until(sub { count_path('/stop/slow/50') >= $target }, 120, 'progress before immediate stop');
my $delivered = $node->safe_psql('postgres',
	"SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $ep{stop} AND status = 'delivered'");
$node->stop('immediate');
cmp_ok($delivered, '<', $BURST, "immediate stop: mid-burst ($delivered delivered)");
eval { $ghosts->quit };
$node->start;
check_burst('immediate stop', $ep{stop}, '/stop/slow/50', $MAXCONN);

# 3. Fast shutdown while requests hang: the 60 s request timeout does not
# hold it up, and the deliveries come back after the restart.
my $hang = $node->safe_psql('postgres', qq{
	SELECT webhook_create_endpoint('hang', '$rcv->{url}/slowpoke/hang', event_types => '{t.hang}',
	                               secret => '$SECRET', timeout => '60s');
	SELECT count(webhook_publish('t.hang', jsonb_build_object('h', i))) FROM generate_series(1, 5) i;
});
($hang) = split /\n/, $hang;
ok(wait_until(sub { count_path('/slowpoke/hang') >= 5 }, 60, 'hanging requests'),
	'five requests hang at the receiver');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $hang AND status = 'in_flight'"),
	'5', 'their deliveries are in flight');
my $t0 = time();
ok($node->stop('fast', fail_ok => 1), 'fast shutdown succeeds');
my $took = time() - $t0;
note(sprintf('fast shutdown took %.2f s', $took));
cmp_ok($took, '<', 20, 'fast shutdown is not held up by the 60 s request timeout');
my $offset = -s $node->logfile;
$node->start;
is($node->safe_psql('postgres',
		"SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $hang AND status IN ('pending', 'in_flight')"),
	'5', 'after restart: the five deliveries are still owed');
ok($node->wait_for_log(qr/webhook: returned 5 in-flight deliveries to the queue/, $offset),
	'startup sweep returned them to the queue');
ok(wait_until(sub { count_path('/slowpoke/hang') >= 10 }, 60, 'hanging requests sent again'),
	'and they are sent again');
$node->safe_psql('postgres', "SELECT webhook_delete_endpoint($hang)");

# 4. Rolled-back events, and those of transactions open at a crash, are
# never sent; a marker committed after them is.
$node->safe_psql('postgres', "SELECT webhook_publish('t.marker', '{}')");
my $got = wait_received($rcv, sub { grep { $_->{path} eq '/ghost/ok' && $_->{body} =~ /t\.marker/ } @{ $_[0] } },
	60, 'marker');
ok(scalar(grep { $_->{path} eq '/ghost/ok' && $_->{body} =~ /t\.marker/ } @$got), 'marker delivered');
is(scalar(grep { $_->{path} eq '/ghost/ok' && $_->{body} =~ /t\.ghost/ } @$got), 0,
	'no t.ghost event ever delivered');
is($node->safe_psql('postgres', "SELECT count(*) FROM webhook_events WHERE type = 't.ghost'"), '0',
	'no t.ghost event in the outbox');

$node->stop('fast');
$rcv->{handle}->kill_kill;
done_testing();
