# docs/migrating.md is tested: every SQL block of the guide runs here, as
# written but for the placeholder address https://receiver.example.com,
# replaced by a loopback receiver per section (test/migrating/serve.js).
# Each receiver checks requests as the source product's own receiver
# documentation tells its customers to, with the receiver code the guide
# shows (taken from the page), and holds the credentials the guide's SQL
# configured.  The test then checks what each product's receivers rely on:
#   setgreet    batches of the events as published, signed in
#               X-Setgreet-Signature, retried after 1 s and 10 s whole
#   form        the fields, in submission order, signed X-Signature: sha256=
#               (and webhook_test's request)
#   freshpaint  the event itself at each destination with its own headers,
#               a request not answered in 5 s failed and retried
#   selwise     bearer, basic, api_key and hmac checked as a server checks
#               them; maxAttempts 4 from 1 s doubling: 4 requests, the
#               delays at least 1, 2 and 4 s, then a dead letter
#   standard    the standardwebhooks library verifies; a retry has the same
#               webhook-id and is recognized as handled
# and, at the end, that each receiver refuses requests signed or
# authenticated with other credentials.  Delays are checked from below
# only: machines are noisy.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;

use JSON::PP;
use List::Util qw(all sum);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WebhookTest;

my $src = $ENV{TESTDIR} // '.';
my $guide = "$src/docs/migrating.md";
my $placeholder = 'https://receiver.example.com';
my @sections = qw(setgreet form freshpaint selwise standard);

open my $fh, '<', $guide or die "could not open $guide: $!";
my $doc = do { local $/; <$fh> };
close $fh;

# section -> kind (endpoint, try, publish) -> [SQL], in the guide's order
my %sql;
while ($doc =~ /<!-- migrating:([a-z]+) (endpoint|try|publish) -->\n```sql\n(.*?)\n```\n/sg)
{
	push @{ $sql{$1}{$2} }, $3;
}
my $blocks = () = $doc =~ /^```sql$/mg;
is(sum(map { scalar @$_ } map { values %$_ } values %sql), $blocks, 'every SQL block of the guide is marked to run');
is_deeply([ sort keys %sql ], [ sort @sections ], 'the guide has the five sections');
for my $s (@sections)
{
	ok($sql{$s}{endpoint} && $sql{$s}{publish}, "$s: the guide creates endpoints and publishes");
	like($doc, qr/<!-- migrating:$s receiver -->\n```js\n/, "$s: the guide shows the receiver code");
	ok((all { index($_, $placeholder) >= 0 } @{ $sql{$s}{endpoint} // [] }), "$s: its endpoints use the placeholder address");
}

my $node = start_node('migrating');
worker_pid($node);

# how the test makes each receiver answer the requests it verified
my %control = (
	setgreet => [ '--fail-first', '2' ],                          # two retries of a batch
	form => [],
	freshpaint => [ '--slow-first', '6000', '--on', '/warehouse$' ],   # past the 5 s timeout
	selwise => [ '--fail-always', '--on', '/bearer$' ],           # every attempt of the policy
	standard => [ '--fail-first', '1' ]);                         # an answer lost after the work
my %rcv;
for my $s (@sections)
{
	my $config = PostgreSQL::Test::Utils::tempdir() . "/$s.json";
	$rcv{$s} = start_receiver("migrating-$s", script => 'test/migrating/serve.js',
		args => [ '--provider', $s, '--doc', $guide, '--config', $config, @{ $control{$s} } ]);
	$rcv{$s}{config} = $config;
}

# Runs the guide's blocks of one kind, the address replaced.
sub run_blocks
{
	my ($s, $kind) = @_;
	my @out;
	for my $block (@{ $sql{$s}{$kind} // [] })
	{
		(my $q = $block) =~ s/\Q$placeholder\E/$rcv{$s}{url}/g;
		push @out, $node->safe_psql('postgres', $q);
	}
	return join "\n", @out;
}

run_blocks($_, 'endpoint') for @sections;
is($node->safe_psql('postgres',
		"SELECT count(*) FROM webhook_endpoints WHERE url !~ '^http://127[.]0[.]0[.]1:[0-9]+/'"),
	'0', 'every endpoint of the guide sends to a loopback receiver');

# Each receiver holds what the guide configured for its paths: the secret,
# the headers it was given, the credentials it expects (for an hmac
# destination, its secret).
my $endpoints = decode_json($node->safe_psql('postgres', q{
	SELECT json_agg(json_build_object('name', name, 'url', url, 'secret', secret, 'signing', signing,
	                                  'headers', headers, 'auth', auth) ORDER BY id)
	  FROM webhook_endpoints}));
my (%id, %section_of);
for my $s (@sections)
{
	my %config;
	for my $ep (grep { index($_->{url}, "$rcv{$s}{url}/") == 0 } @$endpoints)
	{
		my $path = substr($ep->{url}, length $rcv{$s}{url});
		$config{$path} = {
			secret => $ep->{secret},
			headers => $ep->{headers},
			auth => $ep->{auth} // ($ep->{signing} =~ /hex/ ? { type => 'hmac', secret => $ep->{secret} } : undef) };
		$id{$path} = $node->safe_psql('postgres', "SELECT id FROM webhook_endpoints WHERE name = '$ep->{name}'");
		$section_of{$path} = $s;
	}
	ok(%config, "$s: the guide created its endpoints");
	open my $out, '>', "$rcv{$s}{config}.tmp" or die;
	print $out encode_json(\%config);
	close $out;
	rename "$rcv{$s}{config}.tmp", $rcv{$s}{config} or die;
}

# the guide's test request, then the events
like(run_blocks('form', 'try'), qr/^t\|200\|$/, 'form: webhook_test as the guide shows it passes the receiver');
run_blocks($_, 'try') for grep { $_ ne 'form' } @sections;
run_blocks($_, 'publish') for @sections;
ok($node->poll_query_until('postgres', q{
	SELECT NOT EXISTS (SELECT 1 FROM webhook_events e WHERE NOT webhook_fanned_out(e.txid, e.id))
	   AND NOT EXISTS (SELECT 1 FROM webhook_deliveries WHERE status IN ('pending', 'in_flight'))}),
	'every delivery of the guide ended');

for my $s (@sections)
{
	my @refused = grep { !$_->{ok} } @{ received($rcv{$s}) };
	is(scalar @refused, 0, "$s: every request passed the receiver's checks")
	  or diag(join "\n", map { "$_->{path}: $_->{why}" } @refused);
	ok((all { $_->{headers}{'webhook-id'} && $_->{headers}{'webhook-timestamp'}
			  && $_->{headers}{'user-agent'} =~ m{^PostgreSQL-webhook/} } @{ received($rcv{$s}) }),
		"$s: with webhook-id, webhook-timestamp and the User-Agent the guide names");
}

# the events the guide published, as stored, by type prefix
sub published
{
	my ($prefix) = @_;
	return decode_json($node->safe_psql('postgres',
		"SELECT coalesce(json_agg(data::text ORDER BY id), '[]') FROM webhook_events WHERE starts_with(type, '$prefix')"));
}

# the requests of one path in arrival order, and the gaps between them (ms)
sub requests
{
	my ($s, $path) = @_;
	return sort { $a->{t} <=> $b->{t} } grep { $_->{path} eq $path } @{ received($rcv{$s}) };
}

sub gaps
{
	my (@r) = @_;
	return map { $r[$_]{t} - $r[ $_ - 1 ]{t} } 1 .. $#r;
}

sub delivery_status
{
	my ($path) = @_;
	return $node->safe_psql('postgres',
		"SELECT string_agg(DISTINCT status, ',') FROM webhook_deliveries WHERE endpoint_id = $id{$path}");
}

subtest 'setgreet: batches of the events as published, retried after 1 s and 10 s' => sub {
	my $data = published('onboarding.');
	is(scalar @$data, 2, 'two events published');
	my @r = requests('setgreet', '/setgreet');
	my %by_id;
	push @{ $by_id{ $_->{headers}{'webhook-id'} } }, $_ for @r;
	my @items;
	for my $id (sort { $by_id{$a}[0]{t} <=> $by_id{$b}[0]{t} } keys %by_id)
	{
		my @tries = @{ $by_id{$id} };
		is_deeply([ map { $_->{status} } @tries ], [ 503, 503, 200 ], "$id: refused twice, then accepted");
		my @g = gaps(@tries);
		ok($g[0] >= 1000 && $g[1] >= 10000, "$id: retried after 1 s, then 10 s (" . join(', ', map { sprintf '%.0f ms', $_ } @g) . ')');
		my @envelope = map { [ $_->{body} =~ /^\{"events":\[(.*)\],"deliveredAt":"([^"]+)","source":"setgreet"\}$/s ] } @tries;
		ok((all { defined $_->[0] } @envelope), "$id: Setgreet's envelope, byte for byte");
		ok((all { $_->[0] eq $envelope[0][0] } @envelope), "$id: the same events on every retry");
		ok($envelope[0][1] lt $envelope[1][1] && $envelope[1][1] lt $envelope[2][1], "$id: deliveredAt of each attempt");
		push @items, $envelope[-1][0];
	}
	is(join(',', @items), join(',', @$data), 'the items are the events as published, in order');
	is(delivery_status('/setgreet'), 'delivered', 'delivered');
};

subtest 'form: the fields in submission order, signed X-Signature: sha256=' => sub {
	my $data = published('contact_form.');
	is(scalar @$data, 1, 'one submission published');
	my @r = requests('form', '/forms/contact');
	my @test = grep { $_->{headers}{'webhook-id'} =~ /^msg_test_/ } @r;
	my @sub = grep { $_->{headers}{'webhook-id'} !~ /^msg_test_/ } @r;
	is(scalar @test, 1, "webhook_test's request reached the receiver");
	is(scalar @sub, 1, 'the submission was sent once');
	is($sub[0]{body}, $data->[0], 'the body is the fields as published, byte for byte');
	is_deeply($sub[0]{info}{fields}, [ $data->[0] =~ /"([^"]+)":/g ], 'the receiver reads them in submission order');
	is($sub[0]{headers}{'content-type'}, 'application/json', 'as application/json');
};

subtest 'freshpaint: the event at each destination, with its headers and a 5 s timeout' => sub {
	my $data = published('tracking.');
	is(scalar @$data, 1, 'one event published');
	my @auto = requests('freshpaint', '/automation');
	my @wh = requests('freshpaint', '/warehouse');
	is(scalar @auto, 1, 'the automation got it once');
	is(scalar @wh, 2, 'the warehouse twice: its first answer came after the timeout');
	ok((all { $_->{body} eq $data->[0] } @auto, @wh), 'the body is the event as published, byte for byte');
	is($auto[0]{headers}{'webhook-id'}, $wh[0]{headers}{'webhook-id'}, 'with the same webhook-id at both');
	is($wh[0]{headers}{'webhook-id'}, $wh[1]{headers}{'webhook-id'}, 'and on the retry');
	is($auto[0]{headers}{'content-type'}, 'application/json', 'with the Content-Type the guide sets');
	is($node->safe_psql('postgres', qq{
		SELECT string_agg(coalesce(error, 'ok'), '; ' ORDER BY attempt) FROM webhook_attempts
		 WHERE endpoint_id = $id{'/warehouse'} AND delivery_id IS NOT NULL}),
		'timeout after 5000 ms; ok', 'the warehouse: the first attempt timed out at 5 s, the retry succeeded');
	is(delivery_status('/automation') . ' ' . delivery_status('/warehouse'), 'delivered delivered', 'both delivered');
};

subtest 'selwise: each auth type as a server checks it; maxAttempts 4 from 1 s, doubling' => sub {
	for my $path (qw(/selwise/basic /selwise/api-key /selwise/hmac))
	{
		my @r = requests('selwise', $path);
		is(scalar @r, 1, "$path: one request, accepted");
		is(delivery_status($path), 'delivered', "$path: delivered");
	}
	my @r = requests('selwise', '/selwise/bearer');
	is(scalar @r, 4, 'bearer: the receiver refusing, exactly maxAttempts (4) requests');
	my @g = gaps(@r);
	ok($g[0] >= 1000 && $g[1] >= 2000 && $g[2] >= 4000,
		'bearer: after initialDelay * backoffMultiplier^n: 1, 2 and 4 s at least (' . join(', ', map { sprintf '%.0f ms', $_ } @g) . ')');
	is(delivery_status('/selwise/bearer'), 'dead', 'bearer: then a dead letter');
	is($node->safe_psql('postgres', "SELECT count(*) FROM webhook_dead_letters WHERE endpoint_id = $id{'/selwise/bearer'}"),
		'1', 'bearer: in webhook_dead_letters');
};

subtest 'standard: the reference library verifies; a retry is the same webhook-id' => sub {
	my $data = published('invoice.');
	is(scalar @$data, 1, 'one event published');
	my @r = requests('standard', '/webhooks');
	is(scalar @r, 2, 'sent twice: the first answer was lost');
	is($r[0]{headers}{'webhook-id'}, $r[1]{headers}{'webhook-id'}, 'under the same webhook-id');
	ok($r[1]{headers}{'webhook-timestamp'} >= $r[0]{headers}{'webhook-timestamp'}, 'signed afresh');
	is_deeply([ map { $_->{info}{duplicate} ? 'repeat' : 'handled' } @r ], [ 'handled', 'repeat' ],
		'the receiver handled it once and recognized the retry');
	is_deeply([ map { $_->{status} } @r ], [ 503, 204 ], 'and answered the retry 2xx');
	is($r[0]{info}{type}, 'invoice.paid', 'the message is the standard envelope');
	is_deeply($r[0]{info}{data}, decode_json($data->[0]), 'with the data as published');
	cmp_ok((gaps(@r))[0], '>=', 4000, "the default schedule's first retry, 5 s give or take 20 %");
	is(delivery_status('/webhooks'), 'delivered', 'delivered');
};

# The receivers are not rubber stamps: a request signed or authenticated
# with anything but what they hold is refused, for the reason checked.
my %other = (
	'/setgreet' => q{secret => 'another-secret'},
	'/forms/contact' => q{secret => 'another-secret'},
	'/automation' => q{headers => '{"Content-Type": "application/json", "X-Webhook-Token": "token-of-the-warehouse"}'},
	'/warehouse' => q{headers => '{"X-Webhook-Token": "token-of-the-warehouse", "X-Source": "elsewhere"}'},
	'/selwise/bearer' => q{auth => '{"type": "bearer", "token": "another-token"}'},
	'/selwise/basic' => q{auth => '{"type": "basic", "username": "selwise", "password": "pass"}'},
	'/selwise/api-key' => q{auth => '{"type": "api_key", "header": "X-Api-Key", "key": "another-key"}'},
	'/selwise/hmac' => q{secret => 'another-secret'},
	'/webhooks' => q{secret => webhook_generate_secret()});
is_deeply([ sort keys %other ], [ sort keys %id ], 'every endpoint of the guide is tried with other credentials');
for my $path (sort keys %other)
{
	my $s = $section_of{$path};
	my $before = scalar @{ received($rcv{$s}) };
	my $res = $node->safe_psql('postgres', qq{
		SELECT webhook_update_endpoint($id{$path}, $other{$path});
		SELECT ok, status FROM webhook_test($id{$path})});
	my $got = wait_received($rcv{$s}, sub { @{ $_[0] } > $before }, 30, "$path refused");
	like($res, qr/^\s*f\|401$/m, "$s $path: other credentials are refused with 401 ($got->[-1]{why})");
	like($got->[-1]{why} // '', qr/signature|credentials|header|does not match/i, "$s $path: for that reason");
}

done_testing();
