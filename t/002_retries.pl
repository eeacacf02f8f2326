# Retries: a flaky receiver gets the same webhook-id until it answers 2xx,
# an always-failing one ends in the dead letters after the schedule,
# Retry-After (seconds or HTTP date, capped) replaces the scheduled delay,
# timeouts and redirects are failures, response bodies are capped.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;

use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WebhookTest;

# no circuit breaker: the failing endpoints below fail 30 requests at once
my $node = start_node('retries',
	"webhook.response_limit = 1000\nwebhook.max_retry_after = '3s'\nwebhook.breaker_failures = 0\n");
my $rcv = start_receiver('retries');
my $u = $rcv->{url};

sub endpoint
{
	my ($name, $path, $schedule, $timeout) = @_;
	$timeout //= '10s';
	return $node->safe_psql('postgres', qq{
		SELECT webhook_create_endpoint('$name', '$u/$name/$path', event_types => '{$name.*}',
		                               secret => '$SECRET', retry_schedule => '$schedule',
		                               timeout => '$timeout')});
}

sub delivery
{
	my ($ep) = @_;
	my $row = $node->safe_psql('postgres', qq{
		SELECT status || '|' || attempts || '|' || coalesce(last_status::text, '') || '|' || coalesce(last_error, '')
		  FROM webhook_deliveries WHERE endpoint_id = $ep});
	return split /\|/, $row, 4;
}

sub wait_status
{
	my ($ep, $status) = @_;
	return $node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM webhook_deliveries WHERE endpoint_id = $ep AND status = '$status'");
}

sub requests_to
{
	my ($prefix) = @_;
	return [ grep { index($_->{path}, "/$prefix/") == 0 } @{ received($rcv) } ];
}

my $flaky = endpoint('flaky', 'flaky/2', '{0.2s,0.2s,0.2s}');
my $dead = endpoint('dead', 'status/500', '{0.2s,0.2s}');
my $ra = endpoint('ra', 'retry-after/2', '{1h}');
my $radate = endpoint('radate', 'retry-after-date/2', '{1h}');
my $racap = endpoint('racap', 'retry-after/3600', '{1h}');
my $slow = endpoint('stall', 'hang', '{0.2s}', '500ms');
my $redir = endpoint('redir', 'redirect', '{}');
my $big = endpoint('big', 'big/100000', '{}');

$node->safe_psql('postgres', q{
	SELECT webhook_publish(t || '.happened', jsonb_build_object('to', t))
	  FROM unnest('{flaky,dead,ra,radate,racap,stall,redir,big}'::text[]) t});

# flaky: two 500s, then 200, all with one webhook-id
ok(wait_status($flaky, 'delivered'), 'flaky receiver: delivered after retries');
my @st = delivery($flaky);
is($st[1], 3, 'flaky: three attempts');
my $reqs = requests_to('flaky');
is(scalar(@$reqs), 3, 'flaky: three requests received');
my %ids = map { $_->{id} => 1 } @$reqs;
is(scalar(keys %ids), 1, 'flaky: the same webhook-id on every attempt');
is(scalar(grep { $_->{verified} } @$reqs), 3, 'flaky: every attempt verified (fresh timestamp, fresh signature)');
is($node->safe_psql('postgres', "SELECT string_agg(status_code::text || ':' || ok, ',' ORDER BY attempt) FROM webhook_attempts WHERE endpoint_id = $flaky"),
	'500:false,500:false,200:true', 'flaky: attempts recorded in order');

# always failing: dead after 1 + 2 attempts, listed in the dead letters
ok(wait_status($dead, 'dead'), 'always-failing receiver: dead-lettered');
@st = delivery($dead);
is($st[1], 3, 'dead: initial attempt plus one per scheduled delay');
is($st[2], 500, 'dead: last status recorded');
is($node->safe_psql('postgres', "SELECT attempts || ' ' || last_status || ' ' || event_type || ' ' || (data->>'to') FROM webhook_dead_letters WHERE endpoint_id = $dead"),
	'3 500 dead.happened dead', 'dead: shown in webhook_dead_letters');
is(scalar(@{ requests_to('dead') }), 3, 'dead: no request after the schedule ran out');

# Retry-After in seconds and as an HTTP date replaces a one-hour delay
for my $c ([ $ra, 'ra', 'seconds' ], [ $radate, 'radate', 'HTTP date' ])
{
	my ($ep, $p, $what) = @$c;
	ok(wait_status($ep, 'delivered'), "Retry-After as $what: retried long before the 1 h schedule");
	my $r = requests_to($p);
	is(scalar(@$r), 2, "Retry-After as $what: two requests");
	# HTTP dates have whole-second precision: allow for the truncation
	cmp_ok(($r->[1]{t} - $r->[0]{t}) / 1000, '>=', ($p eq 'ra' ? 1.9 : 0.9),
		"Retry-After as $what: the receiver's delay was respected");
}

# Retry-After: 3600 capped by webhook.max_retry_after = 3s
ok(wait_status($racap, 'delivered'), 'Retry-After capped by webhook.max_retry_after');
my $r = requests_to('racap');
cmp_ok(($r->[1]{t} - $r->[0]{t}) / 1000, '>=', 2.9, 'capped Retry-After still waited the cap');

# a receiver that never answers: timed out, retried, dead
ok(wait_status($slow, 'dead'), 'hanging receiver: timed out twice and dead-lettered');
@st = delivery($slow);
like($st[3], qr/time/i, "timeout recorded as the error: $st[3]");
is($node->safe_psql('postgres', "SELECT count(*) FROM webhook_attempts WHERE endpoint_id = $slow AND status_code IS NULL AND NOT ok AND duration_ms >= 450"),
	'2', 'timeouts recorded as attempts without a status, after the timeout');

# 302 is a failure and is not followed
ok(wait_status($redir, 'dead'), 'redirect: a failed attempt (empty schedule: dead at once)');
is((delivery($redir))[2], 302, 'redirect: 302 recorded');
is(scalar(grep { $_->{path} eq '/ok' } @{ received($rcv) }), 0, 'redirect not followed');

# a 100 kB answer is recorded capped at webhook.response_limit
ok(wait_status($big, 'delivered'), 'big response: delivered');
is($node->safe_psql('postgres', "SELECT length(response_body) FROM webhook_attempts WHERE endpoint_id = $big"),
	'1000', 'response body capped at webhook.response_limit');

# Many requests' outcomes recorded together: each lands on its own
# deliveries.  The events of four endpoints are interleaved (ids alternate),
# so a cycle's outcomes mix them: delivered, retried, dead, and a batch
# retried, which is named by its first delivery.
my %mix;
$mix{$_->[0]} = $node->safe_psql('postgres', qq{
	SELECT webhook_create_endpoint('$_->[0]', '$u/$_->[0]/$_->[1]', event_types => '{$_->[0].*}',
	                               secret => '$SECRET', retry_schedule => '$_->[2]' $_->[3])})
  for ([ 'mixok', 'ok', '{1h}', '' ], [ 'mixretry', 'status/503', '{1h}', '' ],
	[ 'mixdead', 'status/500', '{}', '' ],
	[ 'mixbatch', 'status/502', '{1h}', ", format => 'batch', batch_size => 7" ]);
my $mixeps = join ',', values %mix;
$node->safe_psql('postgres', q{
	SELECT webhook_publish(t || '.x', jsonb_build_object('i', i))
	  FROM generate_series(1, 30) i, unnest('{mixok,mixretry,mixdead,mixbatch}'::text[]) t
	 ORDER BY i, t});
ok($node->poll_query_until('postgres', qq{
	SELECT count(*) = 120 FROM webhook_deliveries
	 WHERE endpoint_id IN ($mixeps) AND attempts = 1 AND status <> 'in_flight'}),
	'interleaved outcomes: every delivery tried once');
is($node->safe_psql('postgres', qq{
	SELECT string_agg(format('%s %s %s %s %s', e.name, d.status, d.last_status,
	                         coalesce(d.last_error, '-'), d.n), ', ' ORDER BY e.name)
	  FROM (SELECT endpoint_id, status, last_status, last_error, count(*) AS n
	          FROM webhook_deliveries WHERE endpoint_id IN ($mixeps)
	         GROUP BY 1, 2, 3, 4) d JOIN webhook_endpoints e ON e.id = d.endpoint_id}),
	'mixbatch pending 502 HTTP 502 30, mixdead dead 500 HTTP 500 30, '
	  . 'mixok delivered 200 - 30, mixretry pending 503 HTTP 503 30',
	'interleaved outcomes: status, code and error each from its own request');
is($node->safe_psql('postgres', qq{
	SELECT count(*) FROM webhook_deliveries WHERE endpoint_id IN ($mixeps)
	   AND (lease_token IS NOT NULL
	        OR (finished_at IS NOT NULL) <> (status IN ('delivered', 'dead'))
	        OR (status = 'pending' AND next_attempt_at < now() + interval '30 min'))}),
	'0', 'interleaved outcomes: leases cleared, finished and retry times set by status');
is($node->safe_psql('postgres', qq{
	SELECT count(*) FILTER (WHERE d.batch_id = a.delivery_ids[1]) || '/' || count(*)
	  FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = ANY (a.delivery_ids)
	 WHERE a.endpoint_id = $mix{mixbatch}}),
	'30/30', 'interleaved outcomes: each failed batch named by its own first delivery');
is($node->safe_psql('postgres', qq{
	SELECT count(*) FROM webhook_deliveries
	 WHERE endpoint_id IN ($mix{mixok}, $mix{mixretry}, $mix{mixdead}) AND batch_id IS NOT NULL}),
	'0', 'interleaved outcomes: only batches are named');

# nothing left in flight
is($node->safe_psql('postgres', "SELECT count(*) FROM webhook_deliveries WHERE status = 'in_flight'"),
	'0', 'no delivery left in flight');

done_testing();
