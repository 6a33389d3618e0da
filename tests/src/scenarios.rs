//! The lock scenarios, as scripts in `conformance/rpcgen`'s command language (see
//! [`crate::script`]), shared by the end-to-end tests (this crate's client, NLM v1/v3/v4, TCP
//! and UDP) and the wire-conformance test (the independent rpcgen client, v4). `$F` stands
//! for a file handle. Each script starts from a server with no locks on `$F`.

use brlock_native::nlm::NlmVersion;

/// Two owners (same host, different svid; and another host) and one exclusive range.
pub const EXCLUSIVE_CONFLICT: &str = "
lock hostA 1 ownerA $F 1 0 100 0 0 1
  -> granted
# overlapping exclusive and shared requests of another owner are refused
lock hostA 2 ownerB $F 1 50 10 0 0 1
  -> denied
lock hostA 2 ownerB $F 0 50 10 0 0 1
  -> denied
lock hostB 7 ownerC $F 1 99 1 0 0 1
  -> denied
# adjacent ranges do not overlap
lock hostA 2 ownerB $F 1 100 50 0 0 1
  -> granted
# the holder may lock over its own range again
lock hostA 1 ownerA $F 1 10 10 0 0 1
  -> granted
# TEST returns the holder of the conflicting lock
test hostB 7 ownerC $F 1 0 10
  -> denied holder excl=1 svid=1 oh=ownerA offset=0 len=100
test hostB 7 ownerC $F 0 99 1
  -> denied holder excl=1 svid=1 oh=ownerA offset=0 len=100
test hostB 7 ownerC $F 1 120 1
  -> denied holder excl=1 svid=2 oh=ownerB offset=100 len=50
test hostB 7 ownerC $F 1 150 1
  -> granted
# an owner never conflicts with itself
test hostA 1 ownerA $F 1 0 10
  -> granted
# UNLOCK frees the range for others
unlock hostA 1 ownerA $F 0 100
  -> granted
lock hostB 7 ownerC $F 1 99 1 0 0 1
  -> granted
# unlocking what one does not hold is not an error
unlock hostA 1 ownerA $F 0 100
  -> granted
";

/// Unlocking the middle of a range splits it; TEST reports the piece that conflicts.
pub const PARTIAL_UNLOCK: &str = "
lock hostA 1 ownerA $F 1 0 100 0 0 1
  -> granted
unlock hostA 1 ownerA $F 20 10
  -> granted
test hostB 7 ownerC $F 1 25 1
  -> granted
test hostB 7 ownerC $F 1 10 1
  -> denied holder excl=1 svid=1 oh=ownerA offset=0 len=20
test hostB 7 ownerC $F 1 40 1
  -> denied holder excl=1 svid=1 oh=ownerA offset=30 len=70
lock hostB 7 ownerC $F 1 20 10 0 0 1
  -> granted
lock hostB 7 ownerC $F 1 19 2 0 0 1
  -> denied
unlock hostA 1 ownerA $F 0 100
  -> granted
lock hostB 7 ownerC $F 1 19 2 0 0 1
  -> granted
";

/// Shared locks coexist; an exclusive request conflicts with any of them.
pub const SHARED: &str = "
lock hostA 1 ownerA $F 0 0 100 0 0 1
  -> granted
lock hostA 2 ownerB $F 0 50 100 0 0 1
  -> granted
test hostB 7 ownerC $F 0 60 1
  -> granted
test hostB 7 ownerC $F 1 120 1
  -> denied holder excl=0 svid=2 oh=ownerB offset=50 len=100
test hostB 7 ownerC $F 1 10 1
  -> denied holder excl=0 svid=1 oh=ownerA offset=0 len=100
lock hostB 7 ownerC $F 1 60 1 0 0 1
  -> denied
lock hostB 7 ownerC $F 0 60 1 0 0 1
  -> granted
# the only holder of a shared range may upgrade it to exclusive
lock hostA 1 ownerA $F 1 0 10 0 0 1
  -> granted
test hostB 7 ownerC $F 0 5 1
  -> denied holder excl=1 svid=1 oh=ownerA offset=0 len=10
# but not where another owner shares it
lock hostA 1 ownerA $F 1 60 1 0 0 1
  -> denied
";

/// len 0 means to the end of the file, and TEST reports it as len 0.
pub const WHOLE_FILE: &str = "
lock hostA 1 ownerA $F 1 0 0 0 0 1
  -> granted
test hostB 7 ownerC $F 0 4000000000 5
  -> denied holder excl=1 svid=1 oh=ownerA offset=0 len=0
lock hostB 7 ownerC $F 0 1000000 5 0 0 1
  -> denied
unlock hostA 1 ownerA $F 0 0
  -> granted
lock hostA 1 ownerA $F 1 10 0 0 0 1
  -> granted
test hostB 7 ownerC $F 1 0 10
  -> granted
test hostB 7 ownerC $F 1 0 11
  -> denied holder excl=1 svid=1 oh=ownerA offset=10 len=0
# unlocking to the end of the file from the middle leaves the head
unlock hostA 1 ownerA $F 20 0
  -> granted
test hostB 7 ownerC $F 1 20 1000
  -> granted
test hostB 7 ownerC $F 1 0 0
  -> denied holder excl=1 svid=1 oh=ownerA offset=10 len=10
";

/// A blocking request that conflicts is BLOCKED; CANCEL withdraws it, so it is never
/// granted when the holder lets go.
pub const BLOCK_THEN_CANCEL: &str = "
lock hostA 1 ownerA $F 1 0 100 0 0 1
  -> granted
lock hostB 7 ownerC $F 1 0 10 1 0 1
  -> blocked
test hostB 7 ownerC $F 1 0 10
  -> denied holder excl=1 svid=1 oh=ownerA offset=0 len=100
cancel hostB 7 ownerC $F 1 0 10 1
  -> granted
unlock hostA 1 ownerA $F 0 100
  -> granted
sleep 300
  -> ok
test hostA 1 ownerA $F 1 0 10
  -> granted
# a blocking request that can be granted at once is simply granted
lock hostB 7 ownerC $F 1 500 10 1 0 1
  -> granted
";

/// 64-bit offsets (v4): no truncation to 32 bits, and FBIG for a range past 2^64.
pub const WIDE_OFFSETS: &str = "
lock hostA 1 ownerA $F 1 4294967306 100 0 0 1
  -> granted
test hostB 7 ownerC $F 1 4294967356 1
  -> denied holder excl=1 svid=1 oh=ownerA offset=4294967306 len=100
# same low 32 bits as the held range: must not conflict
test hostB 7 ownerC $F 1 10 100
  -> granted
lock hostB 7 ownerC $F 1 10 100 0 0 1
  -> granted
lock hostB 7 ownerC $F 1 9223372036854775808 1 0 0 1
  -> granted
# the last byte exists; one past it does not (XNFS: NLM4_FBIG when offset + len overflows)
lock hostA 1 ownerA $F 1 18446744073709551615 1 0 0 1
  -> granted
test hostB 7 ownerC $F 1 18446744073709551615 0
  -> denied holder excl=1 svid=1 oh=ownerA offset=18446744073709551615 len=0
lock hostA 1 ownerA $F 1 18446744073709551615 2 0 0 1
  -> fbig
test hostB 7 ownerC $F 1 18446744073709551615 2
  -> fbig
lock hostA 1 ownerA $F 1 2 18446744073709551615 0 0 1
  -> fbig
unlock hostA 1 ownerA $F 18446744073709551614 3
  -> fbig
";

/// SHARE/UNSHARE (v3, v4): DOS share reservations on a whole file; NM_LOCK; FREE_ALL.
pub const SHARES_AND_HOST_CALLS: &str = "
# mode: 0 deny none, 1 deny read, 2 deny write, 3 deny both; access: 1 read, 2 write, 3 both
share hostA ownerS $F 1 3 0
  -> granted
share hostB ownerT $F 0 1 0
  -> denied
share hostB ownerT $F 0 2 0
  -> granted
unshare hostA ownerS $F 1 3
  -> granted
share hostB ownerT2 $F 0 1 0
  -> granted
# an opener that denies writing cannot join one that writes
share hostC ownerU $F 2 1 0
  -> denied
# NM_LOCK: a lock of a host that is not monitored
nm_lock hostA 3 ownerN $F 1 200 10 0 0 0
  -> granted
test hostB 7 ownerC $F 1 205 1
  -> denied holder excl=1 svid=3 oh=ownerN offset=200 len=10
# FREE_ALL: host D rebooted, all its locks go
lock hostD 9 ownerD $F 1 300 10 0 0 1
  -> granted
lock hostD 10 ownerE $F 0 400 10 0 0 1
  -> granted
test hostB 7 ownerC $F 1 305 1
  -> denied holder excl=1 svid=9 oh=ownerD offset=300 len=10
free_all hostD 2
  -> ok
# (nlm4_client sends FREE_ALL one-way; give the server a moment before looking)
sleep 100
  -> ok
test hostB 7 ownerC $F 1 300 0
  -> granted
test hostB 7 ownerC $F 1 0 0
  -> denied holder excl=1 svid=3 oh=ownerN offset=200 len=10
";

/// Every scenario with the NLM versions it applies to.
pub const ALL: [(&str, &str, &[NlmVersion]); 7] = [
    ("exclusive_conflict", EXCLUSIVE_CONFLICT, &NlmVersion::ALL),
    ("partial_unlock", PARTIAL_UNLOCK, &NlmVersion::ALL),
    ("shared", SHARED, &NlmVersion::ALL),
    ("whole_file", WHOLE_FILE, &NlmVersion::ALL),
    ("block_then_cancel", BLOCK_THEN_CANCEL, &NlmVersion::ALL),
    ("wide_offsets", WIDE_OFFSETS, &[NlmVersion::V4]),
    (
        "shares_nm_lock_free_all",
        SHARES_AND_HOST_CALLS,
        &[NlmVersion::V3, NlmVersion::V4],
    ),
];
