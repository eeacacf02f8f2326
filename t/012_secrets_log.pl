# Secrets never reach the server log, also when a call fails.  With the
# default log_min_error_statement (error), PostgreSQL logs the statement of
# a failing call; every call below carries a marker in a secret, a token, a
# password, a sensitive header value or event data, and fails.  The log must
# show each error and no marker.  The test cluster also logs every statement
# (log_statement = all, as PostgreSQL::Test::Cluster sets it): those lines
# must not show them either.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WebhookTest;

# first with PostgreSQL's defaults (no statement logging)
my $node = start_node('secrets_log', "log_min_error_statement = error\nlog_statement = none\n");
my $ep = $node->safe_psql('postgres',
	"SELECT webhook_create_endpoint('quiet', 'http://127.0.0.1:1/hook', event_types => '{a.*}')");
my $current = $node->safe_psql('postgres', "SELECT secret FROM webhook_endpoints WHERE id = $ep");

# whsec_ + base64 of "MARKERMARKER...": a valid secret that shows MARKER
my $m = 'whsec_TUFSS0VSTUFSS0VSTUFSS0VSTUFSS0VSTUFSS0VS';
my $log_start = -s $node->logfile;

my @calls = (
	# the review's three
	[ 'update with a bad URL',
	  "SELECT webhook_update_endpoint($ep, url => 'ftp://x.example/', secret => '$m')" ],
	[ 'rotate to the current secret', "SELECT webhook_rotate_secret($ep, '$current')" ],
	[ 'direct INSERT refused by the endpoint trigger',
	  "INSERT INTO webhook_endpoints (name, url, secret) VALUES ('bad name!', 'https://x.example/', '$m')" ],
	[ 'direct INSERT breaking a constraint (its detail shows the row)',
	  "INSERT INTO webhook_events (type, data) VALUES ('bad type', '{\"ssn\": \"MARKER-data\"}')" ],
	# every other way a secret or payload is passed
	[ 'create with a bad URL',
	  "SELECT webhook_create_endpoint('x', 'gopher://x', secret => '$m')" ],
	[ 'create with an unparsable argument',
	  "SELECT webhook_create_endpoint('x', 'https://x.example/', secret => '$m', retry_schedule => '{5 fortnights}')" ],
	[ 'create with a taken name',
	  "SELECT webhook_create_endpoint('quiet', 'https://x.example/', secret => '$m')" ],
	[ 'bearer token',
	  "SELECT webhook_update_endpoint($ep, auth => '{\"type\": \"bearer\", \"token\": \"MARKER-token\"}', timeout => '-1 s')" ],
	[ 'basic password',
	  "SELECT webhook_create_endpoint('y', 'https://y.example/', auth => '{\"type\": \"basic\", \"username\": \"u\", \"password\": \"MARKER-pw\"}', batch_size => 0)" ],
	[ 'sensitive header',
	  "SELECT webhook_update_endpoint($ep, headers => '{\"Authorization\": \"Bearer MARKER-hdr\"}', format => 'nope')" ],
	[ 'rotate to a bad secret', "SELECT webhook_rotate_secret($ep, 'MARKER-not-a-secret')" ],
	[ 'sign with a bad secret', "SELECT webhook_sign('whsec_MARKER!!', 'msg', 1, '{}')" ],
	[ 'public key of a bad key', "SELECT webhook_derive_public_key('whsk_MARKER')" ],
	[ 'publish with a bad type', "SELECT webhook_publish('bad type', '{\"ssn\": \"MARKER-data\"}')" ],
	[ 'publish json too large',
	  "SET webhook.max_payload_size = '1kB'; SELECT webhook_publish_json('a.b', ('{\"ssn\": \"MARKER-data\", \"pad\": \"' || repeat('x', 2000) || '\"}')::json)" ],
	[ 'test with bad data', "SELECT * FROM webhook_test($ep, 'bad type', '{\"ssn\": \"MARKER-data\"}')" ],
	[ 'direct UPDATE of the secret',
	  "UPDATE webhook_endpoints SET secret = 'MARKER-bad', url = 'ftp://x' WHERE id = $ep" ],
	[ 'direct INSERT in capitals, failing on a unique key',
	  "INSERT INTO WEBHOOK_ENDPOINTS (name, url, secret) VALUES ('quiet', 'https://x.example/', '$m')" ],
	[ 'auth that is not JSON (its input error quotes it)',
	  "SELECT webhook_update_endpoint($ep, auth => '{\"type\": \"bearer\", \"token\": MARKER-notjson}')" ],
	# through a function of the application's: the statement names none of ours
	[ 'through a wrapper',
	  "CREATE FUNCTION app_hook(s text) RETURNS bigint LANGUAGE sql AS \$\$ SELECT webhook_create_endpoint('z', 'ftp://z', secret => s) \$\$;
	   SELECT app_hook('$m')" ],
);
sub run_calls
{
	for my $c (@calls)
	{
		my ($ret, $out, $err) = $node->psql('postgres', $c->[1]);
		isnt($ret, 0, "$c->[0]: fails");
		note("$c->[0]: $err");
	}
}
run_calls();

my $log = slurp_file($node->logfile, $log_start);
my @errors = ($log =~ /ERROR:/g);
cmp_ok(scalar @errors, '>=', scalar @calls, 'every failure is logged');
unlike($log, qr/MARKER|TUFSS0VS|\Q$current\E/, 'no secret, token, password, header value or payload in the log');
like($log, qr/The row is not logged: it may hold secrets/, "a failing row's detail is replaced in the log");
# statements that hold no secret are still logged
$node->psql('postgres', 'SELECT 1/0');
$log = slurp_file($node->logfile, $log_start);
like($log, qr/STATEMENT:\s+SELECT 1\/0/, 'other statements keep their STATEMENT line');

# Then with every statement logged: a statement naming the extension's
# objects is logged without its text.  (A statement of the application's
# that calls them through its own function is logged as sent, before any
# function of ours runs: docs/reference.md says so.)
$node->append_conf('postgresql.conf', "log_statement = all\n");
$node->reload;
@calls = grep { $_->[0] ne 'through a wrapper' } @calls;
$log_start = -s $node->logfile;
run_calls();
$log = slurp_file($node->logfile, $log_start);
unlike($log, qr/MARKER|TUFSS0VS|\Q$current\E/, 'log_statement = all: no secret or payload in the log');
like($log, qr/statement: \[not logged: it names objects of the webhook extension/,
	'log_statement lines are kept, without the statement');
$node->psql('postgres', 'SELECT 42 AS plain');
$log = slurp_file($node->logfile, $log_start);
like($log, qr/statement: SELECT 42 AS plain/, 'other statements are logged as they are');

done_testing();
