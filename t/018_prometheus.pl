# Monitoring: the real prometheus-postgres-exporter, run with
# contrib/prometheus/webhook_queries.yaml against a test cluster as a role
# granted only the columns docs/operations.md lists, exposes on loopback
# every endpoint's state, queue, lag, recent requests and request times,
# with the labels and the values SQL gives for a known state; its queries
# scan neither webhook_deliveries nor webhook_attempts once they are
# filled; and every query of contrib/grafana/webhook-dashboard.json reads
# only those series and their labels.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;

use CPAN::Meta::YAML;
use File::Spec;
use HTTP::Tiny;
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WebhookTest;

my ($exporter) = grep { -x $_ } map { ("$_/prometheus-postgres-exporter", "$_/postgres_exporter") }
  File::Spec->path();
plan skip_all => 'prometheus-postgres-exporter is not installed (apt-get install prometheus-postgres-exporter)'
  unless $exporter;

my $srcdir = "$FindBin::Bin/..";
my $queries = "$srcdir/contrib/prometheus/webhook_queries.yaml";
my $dashboard = "$srcdir/contrib/grafana/webhook-dashboard.json";

# The series the queries file defines, with their labels besides server
# (which the exporter adds); docs/operations.md lists the same.
my @labels = qw(datname endpoint_id endpoint);
my %series = (
	webhook_endpoint_state => [ @labels, 'state' ],
	map { $_ => \@labels } qw(
	  webhook_endpoint_pending webhook_endpoint_in_flight webhook_endpoint_dead_letters
	  webhook_endpoint_lag_seconds webhook_endpoint_consecutive_failures
	  webhook_endpoint_5m_delivered webhook_endpoint_5m_failed
	  webhook_endpoint_5m_p50_seconds webhook_endpoint_5m_p95_seconds));

# The queries file defines those and no other (CPAN::Meta::YAML: the YAML
# reader in Perl's core).
my $yaml = CPAN::Meta::YAML->read($queries) or die CPAN::Meta::YAML->errstr;
$yaml = $yaml->[0];
my %defined;
for my $q (keys %$yaml)
{
	my @labels_of = map { my ($c, $m) = %$_; $m->{usage} eq 'LABEL' ? $c : () } @{ $yaml->{$q}{metrics} };
	for my $m (@{ $yaml->{$q}{metrics} })
	{
		my ($c, $spec) = %$m;
		$defined{"${q}_$c"} = [ sort @labels_of ] unless $spec->{usage} eq 'LABEL';
	}
	is($yaml->{$q}{master}, 'true', "$q: runs only in the database of the exporter's connection");
}
is_deeply(\%defined, { map { $_ => [ sort @{ $series{$_} } ] } keys %series },
	'the queries file defines these series with these labels');

my $node = start_node('prometheus');
my $rcv = start_receiver('prometheus');
my $u = $rcv->{url};

# The known state: one endpoint with a delivery delivered, one with a dead
# letter, one (disabled) with three pending, one with a request hanging,
# one paused, one with its circuit open, and one whose attempts are
# written by hand to fix the request times.
$node->safe_psql('postgres', qq{
	SELECT webhook_create_endpoint('ok', '$u/ok/ok', event_types => '{ok.*}');
	SELECT webhook_create_endpoint('dead', '$u/dead/status/500', event_types => '{dead.*}', retry_schedule => '{}');
	SELECT webhook_create_endpoint('waiting', '$u/waiting/ok', event_types => '{wait.*}');
	SELECT webhook_disable(id, 'kept waiting') FROM webhook_endpoints WHERE name = 'waiting';
	SELECT webhook_create_endpoint('hang', '$u/hang/hang', event_types => '{hang.*}', timeout => '60s');
	SELECT webhook_create_endpoint('paused', '$u/paused/ok', event_types => '{none.*}');
	SELECT webhook_set_state(id, 'paused', 'by the test') FROM webhook_endpoints WHERE name = 'paused';
	SELECT webhook_create_endpoint('open', '$u/open/ok', event_types => '{none.*}');
	SELECT webhook_set_state(id, 'circuit_open', 'by the test') FROM webhook_endpoints WHERE name = 'open';
	SELECT webhook_create_endpoint('timed', '$u/timed/ok', event_types => '{none.*}');
	SELECT webhook_disable(id, 'attempts by hand') FROM webhook_endpoints WHERE name = 'timed';
	-- 10 ms to 100 ms a minute ago, the last three failed; and one 10 minutes ago, out of the window
	INSERT INTO webhook_attempts (endpoint_id, attempt, started_at, duration_ms, ok, status_code)
	SELECT e.id, 1, now() - interval '1 minute', 10 * i, i <= 7, CASE WHEN i <= 7 THEN 200 ELSE 500 END
	  FROM webhook_endpoints e, generate_series(1, 10) i WHERE e.name = 'timed';
	INSERT INTO webhook_attempts (endpoint_id, attempt, started_at, duration_ms, ok, status_code)
	SELECT id, 1, now() - interval '10 minutes', 5000, true, 200 FROM webhook_endpoints WHERE name = 'timed';
	SELECT webhook_publish('ok.x', '{}');
	SELECT webhook_publish('dead.x', '{}');
	SELECT webhook_publish('wait.x', jsonb_build_object('i', i)) FROM generate_series(1, 3) i;
	SELECT webhook_publish('hang.x', '{}');
});
my %id = map { split /\|/ } split /\n/,
  $node->safe_psql('postgres', 'SELECT name, id FROM webhook_endpoints');
ok($node->poll_query_until('postgres', qq{
	SELECT (SELECT status FROM webhook_deliveries WHERE endpoint_id = $id{ok}) = 'delivered'
	   AND (SELECT status FROM webhook_deliveries WHERE endpoint_id = $id{dead}) = 'dead'
	   AND (SELECT status FROM webhook_deliveries WHERE endpoint_id = $id{hang}) = 'in_flight'
	   AND (SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $id{waiting} AND status = 'pending') = 3}),
	'one delivered, one dead letter, one in flight, three pending');

# The exporter's role: the columns the queries read, nothing else.
$node->safe_psql('postgres', q{
	CREATE ROLE webhook_exporter LOGIN;
	GRANT SELECT (id, name, state, consecutive_failures) ON webhook_endpoints TO webhook_exporter;
	GRANT SELECT (endpoint_id, status, created_at) ON webhook_deliveries TO webhook_exporter;
	GRANT SELECT (endpoint_id, started_at, ok, duration_ms) ON webhook_attempts TO webhook_exporter;
});
for my $q ('SELECT secret FROM webhook_endpoints', 'SELECT response_body FROM webhook_attempts',
	'SELECT count(*) FROM webhook_events')
{
	my ($ret, $out, $err) = $node->psql('postgres', "SET ROLE webhook_exporter; $q");
	like($err, qr/permission denied/, "the exporter's role cannot run: $q");
}

# The exporter, on loopback only, with our queries alone: the default
# metrics off, and every collector it has (Debian 12's 0.11 has two,
# Debian 13's 0.17 twenty, under other names).
my ($out, $err) = ('', '');
IPC::Run::run([ $exporter, '--version' ], '>', \$out, '2>', \$err);
diag("$exporter: " . (("$out$err" =~ /(version \S+)/)[0] // 'version unknown'));
($out, $err) = ('', '');
IPC::Run::run([ $exporter, '--help' ], '>', \$out, '2>', \$err);
my @collectors_off =
  map { "--no-collector.$_" } sort keys %{ { map { $_ => 1 } "$out$err" =~ /--(?:\[no-\])?collector\.([a-z_]+)/g } };
my $port = PostgreSQL::Test::Cluster::get_free_port();
my $exporter_log = PostgreSQL::Test::Utils::tempdir() . '/exporter.log';
my $exp;
{
	local $ENV{DATA_SOURCE_NAME} = 'host=' . $node->host . ' port=' . $node->port
	  . ' user=webhook_exporter dbname=postgres sslmode=disable';
	$exp = IPC::Run::start(
		[ $exporter, "--web.listen-address=127.0.0.1:$port", "--extend.query-path=$queries",
		  '--disable-default-metrics', '--disable-settings-metrics', @collectors_off ],
		'<', \undef, '>&', $exporter_log);
}
END { eval { $exp->kill_kill(grace => 2) if $exp; }; }

my $http = HTTP::Tiny->new(timeout => 10);

# One scrape: {samples => [[name, {labels}, value]], types => {name => type}}.
sub scrape
{
	my $res;
	wait_until(sub { $res = $http->get("http://127.0.0.1:$port/metrics"); $res->{success} },
		60, 'the exporter answering')
	  or die "exporter: $res->{status} $res->{content}\n" . slurp_file($exporter_log);
	my (@samples, %types);
	for my $line (split /\n/, $res->{content})
	{
		if ($line =~ /^# TYPE (\S+) (\S+)$/) { $types{$1} = $2; next; }
		next if $line =~ /^#/ || $line eq '';
		$line =~ /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/ or die "unparsed line: $line";
		my ($name, $lab, $value) = ($1, $2 // '', $3);
		my %l = $lab =~ /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
		push @samples, [ $name, \%l, $value ];
	}
	return { samples => \@samples, types => \%types };
}

# The value of a series of ours for an endpoint (and a state).
sub value
{
	my ($s, $name, $endpoint, $state) = @_;
	my @v = map { $_->[2] }
	  grep { $_->[0] eq $name && $_->[1]{endpoint} eq $endpoint && (!defined $state || $_->[1]{state} eq $state) }
	  @{ $s->{samples} };
	return @v == 1 ? $v[0] : "(" . scalar(@v) . " series)";
}

sub lag_sql
{
	return $node->safe_psql('postgres', qq{
		SELECT extract(epoch FROM oldest_pending_age) FROM webhook_endpoint_health WHERE endpoint_id = $id{waiting}});
}

my $lag_before = lag_sql();
my $s = scrape();
my $lag_after = lag_sql();

my %value_of = map { $_->[0] => $_->[2] } grep { $_->[0] =~ /^pg_/ } @{ $s->{samples} };
is($value_of{pg_up}, 1, 'the exporter is connected');
is($value_of{pg_exporter_last_scrape_error}, 0, 'no query failed');
my ($load_error) = grep { $_->[0] eq 'pg_exporter_user_queries_load_error' } @{ $s->{samples} };
is($load_error && $load_error->[2], 0, 'the queries file loaded');

# Every series of ours, and only those, typed gauge, with exactly its labels.
my @ours = grep { $_->[0] =~ /^webhook_/ } @{ $s->{samples} };
is_deeply([ sort keys %{ { map { $_->[0] => 1 } @ours } } ], [ sort keys %series ], 'the series defined');
is_deeply([ grep { ($s->{types}{$_} // '') ne 'gauge' } sort keys %series ], [], 'all gauges');
my @bad_labels = grep {
	join(',', sort keys %{ $_->[1] }) ne join(',', sort('server', @{ $series{ $_->[0] } }))
	  || $_->[1]{datname} ne 'postgres'
	  || ($id{ $_->[1]{endpoint} } // '') ne $_->[1]{endpoint_id}
} @ours;
is_deeply([ map { "$_->[0] " . encode_json($_->[1]) } @bad_labels ], [],
	'labels: server, datname, endpoint_id and endpoint (and state), matching the endpoints');
my $states = $node->safe_psql('postgres', q{
	SELECT pg_get_constraintdef(oid) FROM pg_constraint
	 WHERE conrelid = 'webhook_endpoints'::regclass AND pg_get_constraintdef(oid) LIKE '%state = ANY%'});
my @states = sort($states =~ /'([a-z_]+)'::text/g);
ok(@states >= 2, 'the states webhook_endpoints allows: ' . join(' ', @states));
for my $n (sort keys %series)
{
	my $per = $n eq 'webhook_endpoint_state' ? scalar(@states) : 1;
	is(scalar(grep { $_->[0] eq $n } @ours), $per * scalar(keys %id), "$n: $per series per endpoint");
}
is_deeply([ sort keys %{ { map { $_->[1]{state} => 1 } grep { $_->[0] eq 'webhook_endpoint_state' } @ours } } ],
	\@states, 'webhook_endpoint_state has a series for each state of webhook_endpoints');

# The values, against what the health view says.
my %health = map { my @c = split /\|/; $c[0] => [ @c[ 1 .. 5 ] ] } split /\n/, $node->safe_psql('postgres', q{
	SELECT name, state, pending, in_flight, dead, consecutive_failures FROM webhook_endpoint_health});
for my $ep (sort keys %id)
{
	my ($state, $pending, $in_flight, $dead, $failures) = @{ $health{$ep} };
	is(join(' ', map { value($s, 'webhook_endpoint_state', $ep, $_) } @states),
		join(' ', map { $_ eq $state ? 1 : 0 } @states), "$ep: state $state");
	is(value($s, 'webhook_endpoint_pending', $ep), $pending, "$ep: $pending pending");
	is(value($s, 'webhook_endpoint_in_flight', $ep), $in_flight, "$ep: $in_flight in flight");
	is(value($s, 'webhook_endpoint_dead_letters', $ep), $dead, "$ep: $dead dead letters");
	is(value($s, 'webhook_endpoint_consecutive_failures', $ep), $failures, "$ep: $failures failures in a row");
}
is(value($s, 'webhook_endpoint_pending', 'waiting'), 3, 'the disabled endpoint has its three pending');
is(value($s, 'webhook_endpoint_dead_letters', 'dead'), 1, 'the dead letter is counted');
is(value($s, 'webhook_endpoint_in_flight', 'hang'), 1, 'the hanging request is in flight');
is(value($s, 'webhook_endpoint_state', 'open', 'circuit_open'), 1, 'the open circuit shows');
my $lag = value($s, 'webhook_endpoint_lag_seconds', 'waiting');
ok($lag >= $lag_before && $lag <= $lag_after, "lag $lag s: the oldest pending delivery's age ($lag_before to $lag_after)");
is(value($s, 'webhook_endpoint_lag_seconds', 'ok'), 0, 'no lag with nothing pending');

# Requests of the last 5 minutes: the worker's, and those written by hand.
is(value($s, 'webhook_endpoint_5m_delivered', 'ok') . ' ' . value($s, 'webhook_endpoint_5m_failed', 'ok'),
	'1 0', 'ok: one request delivered');
is(value($s, 'webhook_endpoint_5m_delivered', 'dead') . ' ' . value($s, 'webhook_endpoint_5m_failed', 'dead'),
	'0 1', 'dead: one request failed');
is(value($s, 'webhook_endpoint_5m_delivered', 'timed') . ' ' . value($s, 'webhook_endpoint_5m_failed', 'timed'),
	'7 3', 'timed: 7 delivered and 3 failed, the request of 10 minutes ago left out');
cmp_ok(abs(value($s, 'webhook_endpoint_5m_p50_seconds', 'timed') - 0.055), '<', 1e-9, 'timed: median 55 ms');
cmp_ok(abs(value($s, 'webhook_endpoint_5m_p95_seconds', 'timed') - 0.0955), '<', 1e-9, 'timed: p95 95.5 ms');
my $ok_ms = $node->safe_psql('postgres', "SELECT duration_ms FROM webhook_attempts WHERE endpoint_id = $id{ok}");
cmp_ok(abs(value($s, 'webhook_endpoint_5m_p95_seconds', 'ok') - $ok_ms / 1000), '<', 1e-9,
	"ok: p95 is its one request's time ($ok_ms ms)");
is(value($s, 'webhook_endpoint_5m_p50_seconds', 'hang'), 'NaN', 'no request recorded, no median');

# Cheap at every scrape: on filled tables, the exporter still counts right
# and the plans of its queries, run as its role, scan neither big table.
# One transaction: the worker's fan-out reads every committed event, so the
# events must commit with their deliveries already written (the fan-out then
# finds each delivery there and adds none).
$node->safe_psql('postgres', q{
	SELECT webhook_create_endpoint('bulk', 'http://127.0.0.1:1/bulk', event_types => '{bulk.*}');
	SELECT webhook_disable(id, 'rows by hand') FROM webhook_endpoints WHERE name = 'bulk';
	BEGIN;
	INSERT INTO webhook_events (type, data, occurred_at)
	SELECT 'bulk.x', '{}', now() - interval '1 day' FROM generate_series(1, 100000);
	-- 20,000 pending, 20,000 dead, 60,000 delivered
	INSERT INTO webhook_deliveries (event_id, endpoint_id, status, created_at, next_attempt_at, finished_at)
	SELECT ev.id, e.id, s.status, now() - interval '1 day', now() - interval '1 day',
	       CASE WHEN s.status <> 'pending' THEN now() - interval '1 hour' END
	  FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM webhook_events WHERE type = 'bulk.x') ev
	 CROSS JOIN (SELECT id FROM webhook_endpoints WHERE name = 'bulk') e
	 CROSS JOIN LATERAL (SELECT CASE ev.n % 5 WHEN 0 THEN 'pending' WHEN 1 THEN 'dead' ELSE 'delivered' END) s (status);
	-- 200,000 attempts over two days: about 350 in the last 5 minutes
	INSERT INTO webhook_attempts (endpoint_id, attempt, started_at, duration_ms, ok, status_code)
	SELECT e.id, 1, now() - i * interval '864 ms', 5, true, 200
	  FROM webhook_endpoints e, generate_series(1, 200000) i WHERE e.name = 'bulk';
	COMMIT;
	ANALYZE webhook_endpoints, webhook_deliveries, webhook_attempts;
});
$s = scrape();
is(value($s, 'webhook_endpoint_pending', 'bulk') . ' ' . value($s, 'webhook_endpoint_dead_letters', 'bulk'),
	'20000 20000', 'the filled endpoint: 20,000 pending and 20,000 dead letters');
for my $q (sort keys %$yaml)
{
	my $plan = $node->safe_psql('postgres',
		"SET ROLE webhook_exporter; EXPLAIN (ANALYZE, COSTS OFF) $yaml->{$q}{query}");
	unlike($plan, qr/Seq Scan on webhook_(?:deliveries|attempts)/, "$q: scans neither big table");
	like($plan, qr/(?:Index Scan using|Bitmap Index Scan on) webhook_attempts_started_idx/,
		"$q: the last 5 minutes of attempts by their index")
	  if $yaml->{$q}{query} =~ /webhook_attempts/;
	diag("$q: " . ($plan =~ /(Execution Time: .*)/)[0]);
}

is_deeply([ grep { /\berr=|level=error/i && /webhook/ } split /\n/, slurp_file($exporter_log) ], [],
	'the exporter logged no error about our queries');

# The dashboard: JSON, and every query (panels and variables) reads only our
# series and their labels; every series of ours is on it.
my %label_known = map { $_ => 1 } 'server', 'instance', 'job', map { @$_ } values %series;
my $dash = decode_json(slurp_file($dashboard));
ok($dash->{uid} && $dash->{title} && ref $dash->{panels} eq 'ARRAY', 'the dashboard is a dashboard');

# The series an expression reads, and the label names it uses (in
# matchers and in by, without, on and ignoring lists).
sub promql_names
{
	my ($expr) = @_;
	$expr =~ s/"(?:[^"\\]|\\.)*"//g;    # strings
	my @labels = map { /([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)/g } $expr =~ /\{([^}]*)\}/g;
	$expr =~ s/\{[^}]*\}//g;              # matchers
	$expr =~ s/\[[^\]]*\]//g;            # ranges
	while ($expr =~ s/\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)//)
	{
		push @labels, grep { $_ ne '' } split /[\s,]+/, $1;
	}
	# what is left: functions (followed by "("), keywords, numbers, series
	my @names = grep { !/^(?:and|or|unless|bool|offset|inf|nan)$/i }
	  $expr =~ /(?<![a-zA-Z0-9_:.])([a-zA-Z_:][a-zA-Z0-9_:]*+)(?!\s*\()/g;
	return (\@names, \@labels);
}

my (@exprs, %used);
for my $p (@{ $dash->{panels} })
{
	push @exprs, map { [ "panel \"$p->{title}\"", $_->{expr}, $_->{legendFormat} ] } @{ $p->{targets} // [] };
}
for my $v (@{ $dash->{templating}{list} })
{
	next unless $v->{type} eq 'query';
	for my $q ($v->{definition}, ref $v->{query} ? $v->{query}{query} : $v->{query})
	{
		$q =~ /^label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$/ or die "variable $v->{name}: $q";
		push @exprs, [ "variable $v->{name}", $1, "{{$2}}" ];
	}
}
cmp_ok(scalar(@exprs), '>=', 10, scalar(@exprs) . ' queries on the dashboard');
my @wrong;
for my $e (@exprs)
{
	my ($where, $expr, $legend) = @$e;
	my ($names, $labs) = promql_names($expr);
	push @wrong, "$where: no series in $expr" unless @$names;
	$used{$_} = 1 for @$names;
	push @wrong, map { "$where: unknown series $_" } grep { !$series{$_} } @$names;
	push @wrong, map { "$where: unknown label $_" } grep { !$label_known{$_} } @$labs,
	  ($legend // '') =~ /\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}/g;
}
is_deeply(\@wrong, [], 'the dashboard reads only the series of the queries file and their labels');
is_deeply([ grep { !$used{$_} } sort keys %series ], [], 'every series is on the dashboard');
my @no_ds = map { $_->{title} } grep {
	$_->{type} ne 'row'
	  && (($_->{datasource}{uid} // '') ne '${datasource}'
		|| grep { ($_->{datasource}{uid} // '') ne '${datasource}' } @{ $_->{targets} })
} @{ $dash->{panels} };
is_deeply(\@no_ds, [], 'every panel queries the data source chosen on the dashboard');

done_testing();
