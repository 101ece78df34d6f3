//! End-to-end tests of the NFS front end over TCP against a real array (store + metro).

mod bad_input;
mod connections;
mod failpoint;
mod harness;
mod libnfs;
mod procs;
mod raw;
mod readdir;
mod replay;
mod semantics;
