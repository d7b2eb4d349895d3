#!/bin/sh
set -eu
mkdir -p /var/lib/postgresql/data /var/run/postgresql /docker-entrypoint-initdb.d
chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql
chmod 3777 /var/run/postgresql
chmod 700 /var/lib/postgresql/data
# JIT (LLVM, z3, bitcode; ~180 MB) is optional: without its provider PostgreSQL runs with JIT
# off. Dropped so `docker load` in an emulated guest takes seconds, not minutes. Locale sources
# go too: the cluster uses C.UTF-8, which glibc has built in.
rm -rf /usr/lib/postgresql/17/lib/llvmjit* /usr/lib/postgresql/17/lib/bitcode \
  /usr/lib/x86_64-linux-gnu/libLLVM* /usr/lib/x86_64-linux-gnu/libz3.so* /usr/share/i18n
# Perl (about 60 MB of the 215 MB archive): only postgresql-common's wrappers in /usr/bin
# (pg_wrapper, pg_ctlcluster) and dpkg's maintainer scripts run it. The image's PATH puts
# /usr/lib/postgresql/17/bin first, and everything there and pgBackRest are C. A smaller archive
# is a shorter `docker load` and copy into the guest in each provision.
rm -rf /usr/share/perl /usr/share/perl5 /usr/lib/x86_64-linux-gnu/perl /usr/lib/x86_64-linux-gnu/perl5 \
  /usr/lib/x86_64-linux-gnu/perl-base /usr/lib/x86_64-linux-gnu/libperl.so* /usr/bin/perl /usr/bin/perl5*
