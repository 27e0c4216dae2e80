#!/usr/bin/perl
# Turns a page of swift-argument-parser's generate-manual (mdoc) into the page Debian installs:
# carte.sim.serve → carte-sim-serve in .Dt and .Xr (the file is carte-sim-serve.1), a NAME that whatis
# and apropos can index (one word: the command's words joined by hyphens; the synopsis keeps the
# words), and .Pp for the blank lines groff warns about. Reads standard input, writes standard output.
use strict;
use warnings;
my $command;
while (my $line = <STDIN>) {
    if ($line =~ /^\.(Dt|Xr) (\S+)(.*)$/s) {
        my ($macro, $name, $rest) = ($1, $2, $3);
        $name =~ tr/./-/;
        $line = ".$macro $name$rest";
    } elsif (!defined $command && $line =~ /^\.Nm "([^"]+)"\s*$/) {
        $command = $1;
        (my $word = $command) =~ tr/ /-/;
        $line = ".Nm $word\n";
    } elsif (defined $command && $line =~ /^\.Nm\s*$/) {
        $line = ".Nm \"$command\"\n";
    } elsif ($line =~ /^\.Nd "([^"]*)"\s*$/) {
        $line = ".Nd $1\n";               # .Nd takes the rest of the line: whatis shows no quotes
    } elsif ($line =~ /^\s*$/) {
        $line = ".Pp\n";
    }
    print $line;
}
