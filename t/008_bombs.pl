# Response bombs: receivers answering with huge bodies, endless chunked
# data or a megabyte of headers, many at once, do not grow the worker's
# memory past a fixed bound: the worker stops reading a body at
# webhook.response_limit, judges the request by its status, and records the
# capped body; headers past libcurl's limit fail the request, which is
# recorded and retried like any failure; never an error in the worker.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WebhookTest;

my $node = start_node('bombs', "webhook.response_limit = 4096\nwebhook.breaker_failures = 0\n");
my $rcv = start_receiver('bombs');
my $u = $rcv->{url};

sub worker_rss_kb
{
	my $pid = worker_pid($node);
	open my $fh, '<', "/proc/$pid/status" or die "no worker: $!";
	while (<$fh>)
	{
		return $1 if /^RssAnon:\s+(\d+)/;
	}
	die 'no RssAnon';
}

# warm up: the worker's usual working set
$node->safe_psql('postgres', qq{
	SELECT webhook_create_endpoint('warm', '$u/warm/ok', event_types => '{warm.*}');
	SELECT count(webhook_publish('warm.x', '{}')) FROM generate_series(1, 500)});
$node->poll_query_until('postgres', "SELECT count(*) = 500 FROM webhook_deliveries WHERE status = 'delivered'")
  or die 'warm-up not delivered';
my $before = worker_rss_kb();

# Under AddressSanitizer (scripts/sanitize.sh) freed memory is not reused
# at once: ASan holds it back in its quarantine, to catch uses after free,
# and there it stays resident, with the shadow bytes that poison it (one per
# eight).  The worker's growth then measures that quarantine filling up as
# much as the worker, so the bound grows by the quarantine the run gives
# ASan (quarantine_size_mb in ASAN_OPTIONS, which sanitize.sh passes to the
# tests too; ASan's default is 256 MB): still far below the 640 MB of 20 MB
# answers, or the endless ones, that an uncapped body would keep.
my $limit_mb = 20;
if (grep { /libasan/ } split /\n/, slurp_file('/proc/' . worker_pid($node) . '/maps'))
{
	# the last setting wins, as in ASan
	my @set = ($ENV{ASAN_OPTIONS} // '') =~ /(?:^|:)quarantine_size_mb=(\d+)/g;
	my $q = @set ? $set[-1] : 256;
	$limit_mb += $q * 9 / 8;
	# (no "Sanitizer:" in the text: sanitize.sh would take it for a report)
	diag("the worker runs with AddressSanitizer, whose $q MB quarantine and its shadow "
		  . "may add to its growth: the bound is $limit_mb MB, not 20 MB");
}

# 32 requests answered with 20 MB each, 32 with endless chunked data
$node->safe_psql('postgres', qq{
	SELECT webhook_create_endpoint('big', '$u/big/big/20000000', event_types => '{big.*}',
	                               retry_schedule => '{}', max_in_flight => 32);
	SELECT webhook_create_endpoint('endless', '$u/endless/endless', event_types => '{endless.*}',
	                               retry_schedule => '{}', timeout => '2s', max_in_flight => 32);
	SELECT webhook_create_endpoint('headers', '$u/headers/bigheaders/1000000', event_types => '{headers.*}',
	                               retry_schedule => '{}', max_in_flight => 32);
	SELECT count(webhook_publish('big.x', '{}')) FROM generate_series(1, 32);
	SELECT count(webhook_publish('endless.x', '{}')) FROM generate_series(1, 32);
	SELECT count(webhook_publish('headers.x', '{}')) FROM generate_series(1, 32)});
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 96 FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
	 WHERE e.name IN ('big', 'endless', 'headers') AND d.status IN ('delivered', 'dead')}),
	'every bomb finished');
my $after = worker_rss_kb();
note("worker RssAnon: $before kB before, $after kB after 32 answers of 20 MB, 32 endless ones "
	  . "and 32 with 1 MB of headers");
cmp_ok($after - $before, '<', $limit_mb * 1024, "the worker grew by less than $limit_mb MB");

is($node->safe_psql('postgres', q{
	SELECT count(*) FROM webhook_attempts a JOIN webhook_endpoints e ON e.id = a.endpoint_id
	 WHERE e.name = 'big' AND a.ok AND length(a.response_body) = 4096}),
	'32', '20 MB answers: delivered, body recorded capped at webhook.response_limit');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM webhook_attempts a JOIN webhook_endpoints e ON e.id = a.endpoint_id
	 WHERE e.name = 'endless' AND a.ok AND length(a.response_body) = 4096 AND a.duration_ms < 2000}),
	'32', 'endless answers: cut off at the cap (not the 2 s timeout), judged by their 200');
is($node->safe_psql('postgres', q{
	SELECT count(*) FILTER (WHERE NOT a.ok AND a.error <> '' AND a.duration_ms < 2000) || '/' || count(*)
	  FROM webhook_attempts a JOIN webhook_endpoints e ON e.id = a.endpoint_id
	 WHERE e.name = 'headers'}),
	'32/32', '1 MB of headers: each request failed and recorded with its error');
note('1 MB of headers recorded as: ' . $node->safe_psql('postgres', q{
	SELECT DISTINCT a.error FROM webhook_attempts a JOIN webhook_endpoints e ON e.id = a.endpoint_id
	 WHERE e.name = 'headers'}));
unlike(slurp_file($node->logfile), qr/\bERROR:|\bFATAL:|terminated by signal|out of memory/,
	'no error in the worker');

done_testing();
