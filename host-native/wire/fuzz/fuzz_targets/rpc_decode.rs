//! Bytes from a TCP connection all the way to typed NLM calls: record marking, the RPC call
//! header, and the arguments of every procedure of every NLM version. Nothing may panic, and
//! whatever decodes must survive a re-encode.
#![no_main]

use brlock_wire::nlm::{self, NlmVersion};
use brlock_wire::rpc;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&knob, stream)) = data.split_first() else {
        return;
    };
    // The first byte picks how the stream is chunked and how large a record may be, so the
    // fuzzer can reach both the size limit and records split at every position.
    let chunk = usize::from(knob & 0x0f) + 1;
    let max_record = if knob & 0x80 != 0 {
        64
    } else {
        rpc::DEFAULT_MAX_RECORD
    };
    let mut decoder = rpc::RecordDecoder::with_max_record(max_record);
    for piece in stream.chunks(chunk) {
        if decoder.push(piece).is_err() {
            break;
        }
    }
    while let Some(record) = decoder.next_record() {
        assert!(record.len() <= max_record);
        check_record(&record);
    }
    // Also the whole stream as one record, so call decoding is reached without framing.
    check_record(stream);
});

fn check_record(record: &[u8]) {
    if let Ok(reply) = rpc::decode_reply(record) {
        let mut out = Vec::new();
        rpc::encode_reply(&reply, &mut out).expect("a decoded reply re-encodes");
        assert_eq!(rpc::decode_reply(&out).as_ref(), Ok(&reply));
    }
    match rpc::decode_call(record) {
        Ok(call) => {
            let mut out = Vec::new();
            rpc::encode_call(&call.header, call.args, &mut out).expect("a decoded call re-encodes");
            assert_eq!(rpc::decode_call(&out).as_ref(), Ok(&call));
            check_args(call.args);
        }
        Err(e) => {
            let _ = e.reply();
            check_args(record);
        }
    }
}

fn check_args(args: &[u8]) {
    for version in NlmVersion::ALL {
        for procedure in 0..25 {
            let Ok(call) = nlm::decode_call(version, procedure, args) else {
                continue;
            };
            let mut out = Vec::new();
            match nlm::encode_call(version, &call, &mut out) {
                Ok(()) => {
                    let again = nlm::decode_call(version, procedure, &out);
                    // v1/v3 DEADLCK (5) is sent back as DENIED (1), the only lossy mapping.
                    if version == NlmVersion::V4 {
                        assert_eq!(again.as_ref(), Ok(&call));
                    } else {
                        assert!(again.is_ok());
                    }
                }
                // v3 TEST_RES DEADLCK without a holder becomes DENIED, which needs one.
                Err(nlm::NlmEncodeError::MissingHolder) if version != NlmVersion::V4 => {}
                Err(e) => panic!("{version:?} proc {procedure}: decoded but not encodable: {e}"),
            }
        }
        for procedure in nlm::NlmProc::ALL {
            let _ = nlm::decode_reply(version, procedure, args);
        }
    }
}
