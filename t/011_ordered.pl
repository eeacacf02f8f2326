# Ordered delivery under concurrency: to an ordered endpoint, the events of
# one ordering key go strictly one after another (the next is never sent
# before the previous one is delivered, whatever failures and retries come
# between), while different keys proceed in parallel.  Keys come from
# webhook_publish's ordering_key and, for captured rows, from the primary
# key; four pgbench clients write at once.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;

use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WebhookTest;

my $node = start_node('ordered', "webhook.retry_jitter = 0\n");
my $rcv = start_receiver('ordered');
my $u = $rcv->{url};

sub sql { return $node->safe_psql('postgres', $_[0]); }

my $sched = "'{" . join(',', ('0.05s') x 30) . "}'";
# flaky: 30% of requests fail, so lines stall on retries; slow: 40 ms each
my $flaky = sql(qq{SELECT webhook_create_endpoint('flaky', '$u/flaky/random500/30', event_types => '{ord.*,items.*}',
                     retry_schedule => $sched, ordered => true)});
my $slow = sql(qq{SELECT webhook_create_endpoint('slow', '$u/slow/slow/40', event_types => '{ord.*,items.*}',
                     retry_schedule => $sched, ordered => true)});
# one line for the whole endpoint: events published without a key
my $line = sql(qq{SELECT webhook_create_endpoint('line', '$u/line/random500/30', event_types => '{one.*}',
                     retry_schedule => $sched, ordered => true)});

sql(q{CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL DEFAULT 0);
      INSERT INTO items SELECT g FROM generate_series(1, 5) g;
      SELECT webhook_watch('items', columns => '{id,v}');});

my $dir = PostgreSQL::Test::Utils::tempdir();
open my $fh, '>', "$dir/ord.sql" or die;
print $fh q{\set k random(1, 5)
SELECT webhook_publish('ord.e', jsonb_build_object('k', :k), NULL, 'key' || :k);
UPDATE items SET v = v + 1 WHERE id = :k;
SELECT webhook_publish('one.e', '{}');
};
close $fh;
my ($out, $err) = ('', '');
IPC::Run::run([ 'pgbench', '-n', '-c', '4', '-j', '2', '-t', '40', '-f', "$dir/ord.sql", '-d', $node->connstr('postgres') ],
	'>', \$out, '2>', \$err);
is($?, 0, 'four writers ran 160 transactions') or diag($err);

# 160 published + 160 captured updates per endpoint, 160 without a key
for my $ep ([ $flaky, 320 ], [ $slow, 320 ], [ $line, 160 ])
{
	$node->poll_query_until('postgres',
		"SELECT count(*) = $ep->[1] FROM webhook_deliveries WHERE endpoint_id = $ep->[0] AND status = 'delivered'", 't')
	  or diag(sql("SELECT status, count(*) FROM webhook_deliveries WHERE endpoint_id = $ep->[0] GROUP BY 1"));
}
is(sql("SELECT count(*) FROM webhook_deliveries WHERE status <> 'delivered'"), '0', 'every delivery delivered');

# Each request as [key, event id, arrival ms, delivery id], in arrival order.
my (%delivery, %keyof);

sub requests
{
	my ($name, $ep) = @_;
	for my $row (split /\n/, sql("SELECT endpoint_id, event_id, id FROM webhook_deliveries"))
	{
		my ($e, $ev, $id) = split /\|/, $row;
		$delivery{"$e/$ev"} = $id;
	}
	%keyof = map { my ($id, $k) = split /\|/; ($id => $k) }
	  split /\n/, sql("SELECT id, coalesce(ordering_key, '') FROM webhook_events");
	return [ map {
			my ($ev) = $_->{headers}{'webhook-id'} =~ /^msg_(\d+)$/;
			[ $keyof{$ev}, $ev, $_->{t}, $delivery{"$ep/$ev"}, $_ ]
	} grep { index($_->{path}, "/$name/") == 0 } @{ received($rcv) } ];
}

# Strictly one after another per key: once a later event of a key has been
# sent, no earlier one is sent again; and events go in delivery order.
sub check_fifo
{
	my ($name, $reqs) = @_;
	my (%current, %done, $violations, $reorders, $retries);
	$violations = $reorders = $retries = 0;
	for my $r (@$reqs)
	{
		my ($k, $ev, undef, $did) = @$r;
		if (defined $current{$k} && $current{$k}[0] == $ev)
		{
			$retries++;
			next;
		}
		$violations++ if $done{"$k/$ev"};
		$reorders++ if defined $current{$k} && $current{$k}[1] > $did;
		$done{"$k/$current{$k}[0]"} = 1 if defined $current{$k};
		$current{$k} = [ $ev, $did ];
	}
	is($violations, 0, "$name: no event sent again after a later one of its key");
	is($reorders, 0, "$name: each key's events sent in delivery order");
	return $retries;
}

my $fr = requests('flaky', $flaky);
my $retries = check_fifo('flaky', $fr);
ok($retries > 20, "flaky: lines waited through $retries retries");
check_fifo('slow', requests('slow', $slow));
my $lr = requests('line', $line);
check_fifo('line (no key: one line)', $lr);
is(scalar(keys %{ { map { $_->[0] => 1 } @$lr } }), 1, 'line: all its events share the empty key');

# Captured rows: the key is the primary key, and per row the updates arrive
# exactly in the order they were made (v = 1, 2, 3, ...).
my $seq_ok = 1;
my %last_v;
my %seen;
for my $r (@$fr)
{
	my $body = decode_json($r->[4]{body});
	next unless $body->{type} eq 'items.updated';
	next if $seen{ $r->[1] }++;    # a retry of the same event
	my $id = $body->{data}{new}{id};
	my $v = $body->{data}{new}{v};
	$seq_ok = 0 if $v != ($last_v{$id} // 0) + 1;
	$last_v{$id} = $v;
	$seq_ok = 0 if $r->[0] ne "public.items/$id";
}
ok($seq_ok, 'captured updates of each row arrive as v = 1, 2, 3, ... keyed by public.items/<id>');
is(join(',', map { $last_v{$_} } sort keys %last_v), sql("SELECT string_agg(v::text, ',' ORDER BY id) FROM items"),
	'every update of every row arrived');

# Keys in parallel: with 40 ms per request, some requests of different keys
# overlapped, and none of the same key did.  The receiver's 40 ms timer may
# fire a few milliseconds early (Node's timers count from the time its
# event loop last read the clock), so a request of the same key less than
# 30 ms after the previous one counts as an overlap: one sent while the
# previous was in flight would arrive at once.
my $sr = requests('slow', $slow);
my ($overlap_diff, $overlap_same) = (0, 0);
for my $i (0 .. $#$sr)
{
	for my $j ($i + 1 .. $#$sr)
	{
		my $gap = $sr->[$j][2] - $sr->[$i][2];
		last if $gap >= 40;
		if    ($sr->[$j][0] ne $sr->[$i][0]) { $overlap_diff++ }
		elsif ($gap < 30)                    { $overlap_same++ }
	}
}
ok($overlap_diff > 10, "slow: different keys were in flight together ($overlap_diff overlaps)");
is($overlap_same, 0, 'slow: never two requests of one key at once');

# An endpoint made ordered after its deliveries were made: replaying them
# puts them in their lines (not stuck for want of a key).
my $late = sql(qq{SELECT webhook_create_endpoint('late', '$u/late/ok', event_types => '{late.*}')});
sql(q{SELECT webhook_publish('late.x', '{}', NULL, 'k1'), webhook_publish('late.x', '{}')});
$node->poll_query_until('postgres',
	"SELECT count(*) = 2 FROM webhook_deliveries WHERE endpoint_id = $late AND status = 'delivered'") or die;
sql(qq{SELECT webhook_update_endpoint($late, ordered => true)});
sql(qq{SELECT webhook_replay(id) FROM webhook_deliveries WHERE endpoint_id = $late});
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 2 FROM webhook_deliveries WHERE endpoint_id = $late AND status = 'delivered' AND attempts = 1"),
	'replayed deliveries of an endpoint made ordered later are delivered');
is(sql(qq{SELECT string_agg(ordering_key, ',' ORDER BY id) FROM webhook_deliveries WHERE endpoint_id = $late}), 'k1,',
	'... in the lines of their keys (none: the endpoint-wide line)');


# A transaction large enough to be set aside (50 events or more) while
# endpoints are ordered: it is set
# aside all the same, so an unrelated endpoint's event committed after it
# is fanned out before it is done.  An ordered endpoint's events of each
# key still go in commit order: its deliveries of events committed after
# that transaction are made early, and held until the transaction's own
# events of their keys are fanned out.  Both in one session, one
# transaction each, so that the second commits while the first is fanned out.
my $ob = sql(qq{SELECT webhook_create_endpoint('obulk', '$u/obulk/ok', event_types => '{obulk.*}', ordered => true)});
my $of = sql(qq{SELECT webhook_create_endpoint('ofast', '$u/ofast/ok', event_types => '{ofast.*}')});
my $bulk_hi = sql(q{
  SELECT max(id) FROM (
    SELECT CASE WHEN i % 100 = 0 THEN webhook_publish('obulk.x', jsonb_build_object('i', i), NULL, 'k' || (i / 100 % 10))
                ELSE webhook_publish('filler.x', jsonb_build_object('i', i)) END AS id
      FROM generate_series(1, 20000) i) s;
  SELECT webhook_publish('obulk.x', jsonb_build_object('after', k), NULL, 'k' || k) FROM generate_series(0, 9) k;
  SELECT webhook_publish('ofast.x', '{}');});
($bulk_hi) = split /\n/, $bulk_hi;
$node->poll_query_until('postgres',
	"SELECT count(*) = 210 FROM webhook_deliveries WHERE endpoint_id = $ob AND status = 'delivered'")
  or diag(sql("SELECT status, count(*) FROM webhook_deliveries WHERE endpoint_id = $ob GROUP BY 1"));
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM webhook_deliveries WHERE endpoint_id = $of AND status = 'delivered'") or die;
my $last_bulk = sql(qq{SELECT max(id) FROM webhook_deliveries WHERE endpoint_id = $ob AND event_id <= $bulk_hi});
is(sql(qq{SELECT id < $last_bulk FROM webhook_deliveries WHERE endpoint_id = $of}), 't',
	'with endpoints ordered, an event committed after a large transaction is fanned out before it is done');
is(sql(qq{SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $ob AND event_id > $bulk_hi AND id < $last_bulk}), '10',
	'... and so are the ordered endpoint\'s deliveries of the events committed after it');
my (%at, %bad, %n);
for my $r (@{ requests('obulk', $ob) })
{
	my ($k, $ev) = @$r;
	$n{$k}++;
	$bad{$k}++ if defined $at{$k} && $at{$k} >= $ev;
	$at{$k} = $ev;
}
is(join(',', map { "$_=$n{$_}" } sort keys %n), join(',', map { "k$_=21" } 0 .. 9),
	'the ordered endpoint got each key\'s 21 events once');
is(scalar(keys %bad), 0, '... each key\'s in commit order, the later transaction\'s last');

done_testing();
