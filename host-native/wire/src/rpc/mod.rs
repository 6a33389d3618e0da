//! ONC RPC version 2 (RFC 5531): record marking for TCP, call and reply messages, and
//! credentials. Pure encode/decode: no sockets.
//!
//! A server connection's path through this module:
//! [`record::RecordDecoder`] (bytes → records) → [`message::decode_call`] (record → header +
//! encoded args) → the program's own argument decoder → … → [`message::encode_reply`] →
//! [`record::encode_record`].

pub mod auth;
pub mod message;
pub mod record;

pub use auth::{Auth, AuthStat, AuthSys};
pub use message::{
    AcceptStat, Call, CallError, CallHeader, MessageType, RPC_VERSION, RejectStat, Reply,
    ReplyBody, decode_call, decode_reply, encode_call, encode_reply, encode_success_header,
    peek_message,
};
pub use record::{DEFAULT_MAX_RECORD, RecordDecoder, RecordError, encode_record};
