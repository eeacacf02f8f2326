# Delivery end to end: captured rows and published events reach a real
# receiver on loopback, signed so that the Standard Webhooks reference
# library verifies them; rolled-back writes are never sent.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;

use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WebhookTest;

# The poll interval is an hour: every delivery below is woken by a commit.
my $node = start_node('delivery', "webhook.poll_interval = '1h'\n");
my $rcv = start_receiver('delivery');

$node->safe_psql('postgres', qq{
	CREATE TABLE orders (id int PRIMARY KEY, customer text NOT NULL, total numeric(10,2), card text);
	SELECT webhook_create_endpoint('orders', '$rcv->{url}/orders/ok', event_types => '{orders.*}',
	                               secret => '$SECRET');
	SELECT webhook_create_endpoint('all', '$rcv->{url}/all/ok', secret => '$SECRET');
	SELECT webhook_watch('orders', exclude_columns => '{card}');
});

# 1000 rows in one transaction: 1000 distinct, verified deliveries per endpoint
$node->safe_psql('postgres',
	"INSERT INTO orders SELECT i, 'customer ' || i, i * 1.25, '4111-' || i FROM generate_series(1, 1000) i");
my $got = wait_received($rcv, sub { scalar(grep { $_->{path} eq '/orders/ok' } @{ $_[0] }) >= 1000 },
	120, '1000 deliveries');
my @orders = grep { $_->{path} eq '/orders/ok' } @$got;
my %ids = map { $_->{id} => 1 } @orders;
is(scalar(keys %ids), 1000, '1000 distinct webhook-ids received');
is(scalar(grep { !$_->{verified} } @orders), 0, 'every request verified by the reference library');
my %rows;
for my $r (@orders)
{
	my $b = decode_json($r->{body});
	$rows{ $b->{data}{new}{id} } = $b;
}
is(scalar(keys %rows), 1000, 'every row arrived');
my $b = $rows{7};
is($b->{type}, 'orders.created', 'type');
like($b->{timestamp}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/, 'ISO 8601 timestamp');
is($b->{data}{new}{customer}, 'customer 7', 'row data');
ok(!exists $b->{data}{new}{card}, 'excluded column not sent');
is($orders[0]{headers}{'content-type'}, 'application/json', 'content-type');
like($orders[0]{headers}{'user-agent'}, qr/^PostgreSQL-webhook\/\d/, 'user-agent names the extension');
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 2000 FROM webhook_deliveries WHERE status = 'delivered'"),
	'every delivery recorded as delivered')
  or diag($node->safe_psql('postgres',
	"SELECT endpoint_id, status, count(*) FROM webhook_deliveries GROUP BY 1, 2; SELECT ok, status_code, error, count(*) FROM webhook_attempts GROUP BY 1, 2, 3"));
is($node->safe_psql('postgres', "SELECT count(*) FROM webhook_attempts WHERE ok"), '2000',
	'one successful attempt per delivery');

# A transaction that commits after a later-numbered one: the later one is
# sent while the earlier still runs, and each is sent exactly once (the
# fan-out neither skips the earlier event nor takes either twice).
{
	my $early = $node->background_psql('postgres');
	$early->query_safe(q{BEGIN; SELECT webhook_publish('late.commit', '{"n": 1}')});
	$node->safe_psql('postgres', q{SELECT webhook_publish('late.commit', '{"n": 2}')});
	my $late = sub { [ grep { $_->{path} eq '/all/ok' && $_->{body} =~ /late\.commit/ } @{ $_[0] } ] };
	my $first = wait_received($rcv, sub { @{ $late->($_[0]) } >= 1 }, 30, 'the later-numbered event');
	is(join(',', map { decode_json($_->{body})->{data}{n} } @{ $late->($first) }), '2',
		'the later-numbered event, committed first, is sent while the earlier one is uncommitted');
	$early->query_safe('COMMIT');
	$early->quit;
	ok($node->poll_query_until('postgres', q{
		SELECT count(*) = 2 FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id
		 WHERE e.type = 'late.commit' AND d.status = 'delivered'}),
		'the earlier-numbered event, committed later, is delivered too');
	my @got = @{ $late->(received($rcv)) };
	is(join(',', sort map { decode_json($_->{body})->{data}{n} } @got), '1,2', 'each of the two sent exactly once');
	is($node->safe_psql('postgres', q{
		SELECT count(*) FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id
		  JOIN webhook_events e ON e.id = d.event_id WHERE e.type = 'late.commit'}),
		'2', 'one attempt each');
}

# A bulk transaction (4,500 events) is set aside, and an event committed
# after it is fanned out beside it, not after it; so is an import committed
# in chunks (45 transactions of 100 events, each set aside).  The fan-out
# is held (its lock) until all have committed, so that one window holds
# them; then every event is sent exactly once.
foreach my $chunks (1, 45)
{
	my $rows = 4500 / $chunks;
	my $t = "bulk$chunks";
	# (safe_psql feeds the statements on stdin: each commits on its own)
	my $import = join(";\n", map {
		"SELECT count(webhook_publish('$t.row', jsonb_build_object('i', i))) FROM generate_series(1, $rows) i"
	} 1 .. $chunks);
	my $holder = $node->background_psql('postgres');
	$holder->query_safe(q{BEGIN; SELECT pg_advisory_xact_lock('webhook_events'::regclass::oid::int4, 1)});
	$node->safe_psql('postgres', $import);
	$node->safe_psql('postgres', qq{SELECT webhook_publish('$t.after', '{}')});
	$holder->query_safe('COMMIT');
	$holder->quit;
	my $bulk = sub { [ grep { $_->{path} eq '/all/ok' && $_->{body} =~ /"$t\.(row|after)"/ } @{ $_[0] } ] };
	wait_received($rcv, sub { @{ $bulk->($_[0]) } >= 4501 }, 120, 'the bulk transaction and the event after it');
	ok($node->poll_query_until('postgres', qq{
		SELECT count(*) = 4501 FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id
		 WHERE e.type LIKE '$t.%' AND d.status = 'delivered'}),
		'every event of the bulk transaction and the one after it delivered');
	is($node->safe_psql('postgres', qq{
		SELECT (SELECT d.id FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id WHERE e.type = '$t.after')
		     < (SELECT max(d.id) FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id WHERE e.type = '$t.row')}),
		't', "the event committed after the import ($chunks transactions) was fanned out beside it, not after it");
	is($node->safe_psql('postgres', 'SELECT count(*) FROM webhook_fanout_aside WHERE next_id <= hi_id'), '0',
		'nothing set aside is left to take');
	my @got = @{ $bulk->(received($rcv)) };
	my %seen = map { $_->{id} => 1 } @got;
	is(scalar(@got) . '/' . scalar(keys %seen), '4501/4501', 'each sent exactly once');
}

# update and delete payloads
$node->safe_psql('postgres', "UPDATE orders SET total = 1 WHERE id = 1; DELETE FROM orders WHERE id = 2");
$got = wait_received($rcv, sub { scalar(grep { $_->{body} =~ /orders\.(updated|deleted)/ && $_->{path} eq '/orders/ok' } @{ $_[0] }) >= 2 }, 30, 'update+delete');
my ($upd) = map { decode_json($_->{body}) } grep { $_->{body} =~ /orders\.updated/ } @$got;
is_deeply($upd->{data}{changed}, ['total'], 'update lists changed columns');
is($upd->{data}{old}{total} + 0, 1.25, 'update carries the old row');
my ($del) = map { decode_json($_->{body}) } grep { $_->{body} =~ /orders\.deleted/ } @$got;
is($del->{data}{old}{id}, 2, 'delete carries the old row');

# a rolled-back transaction is never delivered; a marker committed after it is
$node->safe_psql('postgres', q{
	BEGIN; INSERT INTO orders VALUES (5001, 'rolled back', 1, NULL); SELECT webhook_publish('orders.ghost', '{}'); ROLLBACK;
	SELECT webhook_publish('orders.marker', '{"m": 1}');
});
$got = wait_received($rcv, sub { grep { $_->{body} =~ /orders\.marker/ } @{ $_[0] } }, 30, 'marker');
is(scalar(grep { $_->{body} =~ /rolled back|orders\.ghost/ } @$got), 0, 'rolled-back writes never sent');

# idempotency key: one event, one delivery per endpoint
$node->safe_psql('postgres', q{
	SELECT webhook_publish('orders.paid', '{"o": 9}', 'pay-9');
	SELECT webhook_publish('orders.paid', '{"o": 9}', 'pay-9');
	SELECT webhook_publish('orders.marker2', '{}');
});
$got = wait_received($rcv, sub { scalar(grep { $_->{body} =~ /orders\.marker2/ } @{ $_[0] }) >= 2 }, 30, 'marker2');
is(scalar(grep { $_->{body} =~ /"o": ?9/ && $_->{path} eq '/orders/ok' } @$got), 1, 'idempotency key: delivered once');

# webhook_test sends the caller's data (any JSON value), signed, synchronously
my $test = $node->safe_psql('postgres', q{
	SELECT string_agg(ok::text, ',' ORDER BY n) FROM (
	  SELECT 1 AS n, ok FROM webhook_test(1, 'orders.probe', '{"probe": [1, "two"]}')
	  UNION ALL SELECT 2, ok FROM webhook_test(1, 'orders.probe', '"just text"')
	  UNION ALL SELECT 3, ok FROM webhook_test(1, 'orders.probe', 'true')) t});
is($test, 'true,true,true', 'webhook_test with data: three 2xx answers');
$got = received($rcv);
my @probes = map { decode_json($_->{body})->{data} } grep { $_->{body} =~ /orders\.probe/ && $_->{verified} } @$got;
is_deeply(\@probes, [ { probe => [ 1, 'two' ] }, 'just text', JSON::PP::true ], 'webhook_test sent the data as given, verified');

# wake on commit: with a one-hour poll, only the commit's wake-up can send this
$node->safe_psql('postgres', "SELECT webhook_publish('orders.fast', '{}')");
$got = wait_received($rcv, sub { grep { $_->{body} =~ /orders\.fast/ } @{ $_[0] } }, 60, 'fast');
ok(scalar(grep { $_->{body} =~ /orders\.fast/ } @$got), 'a commit wakes the worker (poll interval is 1 h)');

# Batch and ordered endpoints are claimed only when something may be due for
# them (each such claim costs as much as the plain one).  With a one-hour poll,
# nothing but these reasons can send the requests below: the fan-out made
# deliveries of their kind; a replay (a wake-up for every kind), even in the
# transaction of an event that reaches only plain endpoints; an outcome
# recorded on an ordered line (its next event).
$node->safe_psql('postgres', qq{
	SELECT webhook_create_endpoint('kb', '$rcv->{url}/kinds/batch/ok', event_types => '{kinds.*}',
	                               secret => '$SECRET', format => 'batch', batch_size => 10);
	SELECT webhook_create_endpoint('ko', '$rcv->{url}/kinds/ordered/ok', event_types => '{kinds.*}',
	                               secret => '$SECRET', ordered => true);
});
my $kinds = sub {
	my ($path, $type, $n) = @_;
	return wait_received($rcv,
		sub { scalar(grep { $_->{path} eq $path && $_->{body} =~ /\Q$type\E/ } @{ $_[0] }) >= $n },
		60, "$n x $type to $path");
};
$node->safe_psql('postgres', "SELECT webhook_publish('kinds.one', '{}')");
$kinds->('/kinds/batch/ok', 'kinds.one', 1);
$got = $kinds->('/kinds/ordered/ok', 'kinds.one', 1);
ok(scalar(grep { $_->{path} eq '/kinds/ordered/ok' && $_->{body} =~ /kinds\.one/ } @$got),
	'a commit alone brings a batch and an ordered endpoint their event');
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 2 FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
	 WHERE e.name IN ('kb', 'ko') AND d.status = 'delivered'}), 'both recorded as delivered');
$node->safe_psql('postgres', q{
	BEGIN;
	SELECT webhook_publish('orders.mixed', '{}');
	SELECT webhook_replay(d.id) FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
	 WHERE e.name = 'kb';
	COMMIT;
});
$got = $kinds->('/kinds/batch/ok', 'kinds.one', 2);
is(scalar(grep { $_->{path} eq '/kinds/batch/ok' && $_->{body} =~ /kinds\.one/ } @$got), 2,
	'a replay to a batch endpoint committed with an event for plain endpoints is sent');
$node->safe_psql('postgres', q{
	SELECT webhook_publish('kinds.line', jsonb_build_object('n', n), ordering_key => 'k')
	  FROM generate_series(1, 3) n});
$got = $kinds->('/kinds/ordered/ok', 'kinds.line', 3);
is(join(',', map { decode_json($_->{body})->{data}{n} }
		grep { $_->{path} eq '/kinds/ordered/ok' && $_->{body} =~ /kinds\.line/ } @$got),
	'1,2,3', 'an ordered line goes on after each recorded outcome');
$got = $kinds->('/kinds/batch/ok', 'kinds.line', 1);
is(scalar(grep { $_->{path} eq '/kinds/batch/ok' && $_->{verified} } @$got),
	scalar(grep { $_->{path} eq '/kinds/batch/ok' } @$got), 'batches verified');

# The fan-out helper: one runs beside the worker.  Without it (terminated),
# the worker fans out itself, bursts larger than one fan-out step included,
# and starts a new helper.
my $helper_q = "SELECT pid FROM pg_stat_activity WHERE backend_type = 'webhook fanout' AND datname = 'postgres'";
ok($node->poll_query_until('postgres', "SELECT count(*) = 1 FROM ($helper_q) h"), 'one fan-out helper runs');
my $helper = $node->safe_psql('postgres', $helper_q);
is($node->safe_psql('postgres', "SELECT pg_terminate_backend($helper)"), 't', 'helper terminated');
ok($node->poll_query_until('postgres', "SELECT count(*) = 0 FROM ($helper_q) h"), 'the helper left');
$node->safe_psql('postgres',
	"SELECT count(webhook_publish('orders.solo', jsonb_build_object('i', i))) FROM generate_series(1, 1200) i");
$got = wait_received($rcv, sub { scalar(grep { $_->{body} =~ /orders\.solo/ } @{ $_[0] }) >= 2400 }, 120, 'solo');
is(scalar(grep { $_->{body} =~ /orders\.solo/ } @$got), 2400,
	'without the helper, 1200 events (over two fan-out steps) reached both endpoints');
ok($node->poll_query_until('postgres', "SELECT count(*) = 1 FROM ($helper_q) h WHERE pid <> $helper"),
	'the worker started a new helper');
my $log = slurp_file($node->logfile);
unlike($log, qr/\b(?:ERROR|FATAL|PANIC):|terminated by signal/, 'the helper left quietly; no error in the log');

done_testing();
