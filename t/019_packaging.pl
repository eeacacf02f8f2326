# Packaging: META.json (the PGXN distribution metadata) is valid for the
# PGXN Meta Spec 1.0.0 and carries the version written in the Makefile
# (EXTVERSION), which is also the version "make install" installed: the
# server offers it and CREATE EXTENSION makes it.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;

use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WebhookTest;

my $srcdir = "$FindBin::Bin/..";
my ($extension) = slurp_file("$srcdir/Makefile") =~ /^EXTENSION\s*=\s*(\S+)\s*$/m;
my ($version) = slurp_file("$srcdir/Makefile") =~ /^EXTVERSION\s*=\s*(\S+)\s*$/m;
like($version, qr/^\d+\.\d+\.\d+$/, "the Makefile's EXTVERSION, $version, is a semantic version");

my $meta = decode_json(slurp_file("$srcdir/META.json"));
is_deeply([ grep { !defined $meta->{$_} } qw(name version abstract maintainer license provides meta-spec) ],
	[], 'META.json has every field the spec requires');
is($meta->{'meta-spec'}{version}, '1.0.0', 'of the PGXN Meta Spec 1.0.0');
is($meta->{name}, $extension, 'the distribution is named after the extension');
is($meta->{version}, $version, 'the distribution has the version of the Makefile');
is_deeply([ keys %{ $meta->{provides} } ], [$extension], 'it provides the extension alone');
my $provided = $meta->{provides}{$extension};
is($provided->{version}, $version, 'the extension has the version of the Makefile');
ok(-f "$srcdir/$provided->{file}", "its file $provided->{file} exists");
ok(-f "$srcdir/$provided->{docfile}", "its docfile $provided->{docfile} exists");
my %licenses = map { $_ => 1 } qw(agpl_3 apache_1_1 apache_2_0 artistic_1 artistic_2 bsd freebsd
  gfdl_1_2 gfdl_1_3 gpl_1 gpl_2 gpl_3 lgpl_2_1 lgpl_3_0 mit mozilla_1_0 mozilla_1_1 openssl perl_5
  postgresql qpl_1_0 ssleay sun zlib open_source restricted unrestricted unknown);
ok($licenses{ $meta->{license} }, "license $meta->{license} is one the spec names");
like($meta->{release_status}, qr/^(?:stable|testing|unstable)$/, "release_status $meta->{release_status}");
like($meta->{prereqs}{runtime}{requires}{PostgreSQL}, qr/^\d+\.\d+\.\d+$/, 'it names the PostgreSQL it needs');

# what make install installed
my $node = start_node('packaging');
is($node->safe_psql('postgres', "SELECT default_version FROM pg_available_extensions WHERE name = '$extension'"),
	$version, 'the installed control file offers the version of the Makefile');
is($node->safe_psql('postgres', "SELECT extversion FROM pg_extension WHERE extname = '$extension'"),
	$version, 'CREATE EXTENSION makes it');

done_testing();
