# Examples of the manual that the suite can keep honest without a server.
# docs/operations.md quotes the server log of a change of state that the
# worker makes: its LOG and CONTEXT lines must be those sql/operations.sql
# shows (expected/operations.out, which the regression run compares with
# the real output), and its SQL statement the one the worker prepares in
# src/queue.c.
use strict;
use warnings;
use Test::More;

my $src = $ENV{TESTDIR} // '.';

sub slurp
{
	my ($file) = @_;
	open my $fh, '<', "$src/$file" or die "could not open $src/$file: $!";
	local $/;
	return <$fh>;
}

my $manual = slurp('docs/operations.md');
my $expected = slurp('expected/operations.out');
my $queue = slurp('src/queue.c');

# the manual's example: LOG line, CONTEXT line, SQL statement line
my ($doc_log, $doc_context, $doc_statement) = $manual =~
  /^[^\n]*\] LOG:  (webhook: endpoint [^\n]*)\n[^\n]*\] CONTEXT:  ([^\n]*webhook_set_state[^\n]*)\n\t([^\n]*)$/m;
ok(defined $doc_statement, 'docs/operations.md has the server-log example of a change of state')
  or BAIL_OUT('the example was not found');

my ($out_log) = $expected =~ /^LOG:  (webhook: endpoint [^\n]*)$/m;
my ($out_context) = $expected =~ /^CONTEXT:  ([^\n]*webhook_set_state[^\n]*)$/m;
ok(defined $out_context, 'expected/operations.out shows the LOG line and its CONTEXT');
is($doc_context, $out_context, 'the CONTEXT line (signature, line number) is the real one');

# the same message but for the endpoint's name
(my $doc_shape = $doc_log) =~ s/^webhook: endpoint "[^"]*"/webhook: endpoint "NAME"/;
(my $out_shape = $out_log // '') =~ s/^webhook: endpoint "[^"]*"/webhook: endpoint "NAME"/;
is($doc_shape, $out_shape, 'the LOG line is the real one');

my ($plan) = $queue =~ /plan_state = prepare\("set_state", "([^"]*)"/;
ok(defined $plan, 'src/queue.c prepares the worker\'s call of webhook_set_state');
(my $worker_statement = 'SQL statement "' . ($plan // '') . '"') =~ s/%1\$s/public/;
is($doc_statement, $worker_statement, 'the SQL statement is the one the worker runs');

done_testing();
