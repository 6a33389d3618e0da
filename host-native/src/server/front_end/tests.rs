//! The front end driven with a real core and no sockets: calls in, what would be sent out.

use std::net::SocketAddr;
use std::time::Duration;

use brlock_core::{Config, Outcome};

use super::*;
use crate::nlm::{LockArgs, NlmVersion, TestArgs as NlmTestArgs};
use crate::server::file_handles::AcceptAllHandles;
use crate::server::flow::TcpReplies;
use crate::server::intake::ReplyTo;
use crate::server::outbound::Transport;

const FH: [u8; 32] = [7; 32];

struct World {
    front: NlmFrontEnd,
    hosts: ClientHosts,
    core: Core,
    now: u64,
}

fn ctx(procedure: NlmProc, peer: &str) -> Box<CallCtx> {
    Box::new(CallCtx {
        xid: 1,
        version: NlmVersion::V4,
        procedure,
        peer: SocketAddr::new(peer.parse().unwrap(), 800),
        local: "127.0.0.1".parse().unwrap(),
        transport: Transport::Tcp,
        reply_to: ReplyTo::Tcp(TcpReplies::new(4).0),
        drc: None,
        received: Instant::now(),
        what: None,
        in_flight: None,
    })
}

fn lock(caller: &str, svid: u32, offset: u64, block: bool) -> LockArgs {
    LockArgs {
        cookie: vec![svid as u8],
        block,
        exclusive: true,
        lock: Lock {
            caller_name: caller.as_bytes().to_vec(),
            fh: FH.to_vec(),
            oh: vec![svid as u8; 4],
            svid,
            offset,
            len: 10,
        },
        reclaim: false,
        state: 1,
    }
}

impl World {
    fn new(handles: Arc<dyn FileHandleCheck>) -> Self {
        World {
            front: NlmFrontEnd::new(handles, Arc::new(Metrics::new()), "server"),
            hosts: ClientHosts::new(100, Duration::from_secs(60), false),
            core: Core::new(Config::brlock()),
            now: 0,
        }
    }

    /// One call through the front end and the core (every batch durable at once): what is sent.
    fn call(&mut self, ctx: Box<CallCtx>, call: NlmCall) -> Vec<Outgoing> {
        let mut steps = Vec::new();
        let now = Instant::now();
        self.front
            .on_call(ctx, call, &mut self.hosts, &self.core, now, &mut steps);
        self.carry_out(steps)
    }

    fn carry_out(&mut self, steps: Vec<Step>) -> Vec<Outgoing> {
        let mut sent = Vec::new();
        for step in steps {
            match step {
                Step::Send(out) => sent.push(out),
                Step::Decide(_, event) | Step::Event(event) => sent.extend(self.core_event(event)),
            }
        }
        sent
    }

    fn core_event(&mut self, event: Event) -> Vec<Outgoing> {
        self.now += 1;
        let actions = self
            .core
            .step(brlock_core::Instant::from_millis(self.now), event);
        let hosts = &self.hosts;
        let front = &mut self.front;
        actions
            .into_iter()
            .filter_map(|a| front.on_action(a, hosts))
            .collect()
    }
}

fn reply_stat(out: &Outgoing) -> Option<(NlmProc, Stat)> {
    match out {
        Outgoing::Reply {
            ctx,
            reply: NlmReply::Res(res),
            ..
        } => Some((ctx.procedure, res.stat)),
        Outgoing::Reply {
            ctx,
            reply: NlmReply::Test(res),
            ..
        } => Some((ctx.procedure, res.stat)),
        Outgoing::Res {
            ctx,
            res: NlmCall::LockRes(res),
            ..
        } => Some((ctx.procedure, res.stat)),
        _ => None,
    }
}

#[test]
fn a_lock_becomes_an_event_and_its_outcome_the_reply() {
    let mut w = World::new(Arc::new(AcceptAllHandles));
    let sent = w.call(
        ctx(NlmProc::Lock, "127.0.0.2"),
        NlmCall::Lock(lock("a", 1, 0, false)),
    );
    assert_eq!(
        sent.iter().map(reply_stat).collect::<Vec<_>>(),
        [Some((NlmProc::Lock, Stat::Granted))]
    );
    let denied = w.call(
        ctx(NlmProc::Lock, "127.0.0.3"),
        NlmCall::Lock(lock("b", 2, 5, false)),
    );
    assert_eq!(reply_stat(&denied[0]), Some((NlmProc::Lock, Stat::Denied)));
    // The conflicting holder is named in a TEST's reply.
    let test = NlmTestArgs {
        cookie: vec![9],
        exclusive: true,
        lock: lock("b", 2, 5, false).lock,
    };
    let tested = w.call(ctx(NlmProc::Test, "127.0.0.3"), NlmCall::Test(test));
    match &tested[..] {
        [
            Outgoing::Reply {
                reply: NlmReply::Test(res),
                ..
            },
        ] => {
            assert_eq!(res.stat, Stat::Denied);
            assert_eq!(
                res.holder.as_ref().map(|h| (h.svid, h.offset)),
                Some((1, 0))
            );
            assert_eq!(res.cookie, [9]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_msg_call_is_accepted_at_once_and_answered_with_its_res() {
    let mut w = World::new(Arc::new(AcceptAllHandles));
    let sent = w.call(
        ctx(NlmProc::LockMsg, "127.0.0.2"),
        NlmCall::LockMsg(lock("a", 1, 0, false)),
    );
    match &sent[..] {
        [
            Outgoing::Reply {
                reply: NlmReply::Void,
                status: "accepted",
                ..
            },
            Outgoing::Res {
                res: NlmCall::LockRes(res),
                status: "granted",
                ..
            },
        ] => assert_eq!(
            (res.stat, res.cookie.as_slice()),
            (Stat::Granted, &[1u8][..])
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn host_level_refusals_never_reach_the_core() {
    struct Stale;
    impl FileHandleCheck for Stale {
        fn check(&self, _: &[u8]) -> FileHandleStatus {
            FileHandleStatus::Stale
        }
    }
    let mut w = World::new(Arc::new(Stale));
    let sent = w.call(
        ctx(NlmProc::Lock, "127.0.0.2"),
        NlmCall::Lock(lock("a", 1, 0, false)),
    );
    assert_eq!(reply_stat(&sent[0]), Some((NlmProc::Lock, Stat::StaleFh)));
    assert_eq!(w.now, 0, "the core saw nothing");

    // A caller_name used from a second address is refused; a TEST says DENIED_NOLOCKS, since a
    // DENIED must name a holder.
    let mut w = World::new(Arc::new(AcceptAllHandles));
    w.call(
        ctx(NlmProc::Lock, "127.0.0.2"),
        NlmCall::Lock(lock("a", 1, 0, false)),
    );
    let spoofed = w.call(
        ctx(NlmProc::Unlock, "127.0.0.9"),
        NlmCall::Unlock(crate::nlm::UnlockArgs {
            cookie: vec![],
            lock: lock("a", 1, 0, false).lock,
        }),
    );
    assert_eq!(
        reply_stat(&spoofed[0]),
        Some((NlmProc::Unlock, Stat::Denied))
    );
    let test = NlmTestArgs {
        cookie: vec![],
        exclusive: true,
        lock: lock("a", 1, 0, false).lock,
    };
    let tested = w.call(ctx(NlmProc::Test, "127.0.0.9"), NlmCall::Test(test));
    assert_eq!(
        reply_stat(&tested[0]),
        Some((NlmProc::Test, Stat::DeniedNolocks))
    );
}

#[test]
fn a_request_the_core_cannot_decide_now_is_refused_or_abandoned() {
    let mut w = World::new(Arc::new(AcceptAllHandles));
    let mut steps = Vec::new();
    let call = |w: &mut World, steps: &mut Vec<Step>, svid| {
        let args = lock("a", svid, 0, false);
        w.front.on_call(
            ctx(NlmProc::Lock, "127.0.0.2"),
            NlmCall::Lock(args),
            &mut w.hosts,
            &w.core,
            Instant::now(),
            steps,
        );
        match steps.pop() {
            Some(Step::Decide(request, _)) => request,
            other => panic!("{other:?}"),
        }
    };
    let request = call(&mut w, &mut steps, 1);
    let refused = w.front.refuse(request).expect("a reply");
    assert_eq!(reply_stat(&refused), Some((NlmProc::Lock, Stat::Failed)));
    assert!(w.front.refuse(request).is_none(), "answered once");
    let request = call(&mut w, &mut steps, 2);
    w.front.abandon(request);
    let late = Action::Reply {
        request,
        outcome: Outcome::Granted,
    };
    assert!(w.front.on_action(late, &w.hosts).is_none());
}

#[test]
fn a_granted_res_settles_its_waiter_only_from_the_address_the_granted_msg_went_to() {
    let mut w = World::new(Arc::new(AcceptAllHandles));
    w.call(
        ctx(NlmProc::Lock, "127.0.0.2"),
        NlmCall::Lock(lock("a", 1, 0, false)),
    );
    let blocked = w.call(
        ctx(NlmProc::LockMsg, "127.0.0.3"),
        NlmCall::LockMsg(lock("b", 2, 0, true)),
    );
    assert!(
        matches!(&blocked[1], Outgoing::Res { res: NlmCall::LockRes(r), .. } if r.stat == Stat::Blocked)
    );
    let unlock = crate::nlm::UnlockArgs {
        cookie: vec![],
        lock: lock("a", 1, 0, false).lock,
    };
    let sent = w.call(ctx(NlmProc::Unlock, "127.0.0.2"), NlmCall::Unlock(unlock));
    let (to, cookie) = sent
        .iter()
        .find_map(|o| match o {
            Outgoing::Granted {
                to,
                callback,
                grant,
                args,
            } => {
                assert!(grant.msg, "the waiter asked by LOCK_MSG: GRANTED_MSG");
                assert_eq!(
                    (args.lock.svid, args.lock.caller_name.as_slice()),
                    (2, &b"server"[..])
                );
                Some((*to, callback.nlm_cookie.clone()))
            }
            _ => None,
        })
        .expect("a GRANTED_MSG");
    assert_eq!(to, "127.0.0.3".parse::<IpAddr>().unwrap());
    let res = |stat| {
        NlmCall::GrantedRes(Res {
            cookie: cookie.clone(),
            stat,
        })
    };
    let mut steps = Vec::new();
    let (hosts, core) = (&mut w.hosts, &w.core);
    w.front.on_call(
        ctx(NlmProc::GrantedRes, "127.0.0.9"),
        res(Stat::Granted),
        hosts,
        core,
        Instant::now(),
        &mut steps,
    );
    assert!(
        !steps.iter().any(|s| matches!(s, Step::Event(_))),
        "from another address: ignored"
    );
    steps.clear();
    w.front.on_call(
        ctx(NlmProc::GrantedRes, "127.0.0.3"),
        res(Stat::Granted),
        hosts,
        core,
        Instant::now(),
        &mut steps,
    );
    assert!(steps.iter().any(|s| matches!(
        s,
        Step::Event(Event::CallbackOutcome {
            result: CallbackResult::Delivered,
            ..
        })
    )));
    steps.clear();
    w.front.on_call(
        ctx(NlmProc::GrantedRes, "127.0.0.3"),
        res(Stat::Granted),
        hosts,
        core,
        Instant::now(),
        &mut steps,
    );
    assert!(
        !steps.iter().any(|s| matches!(s, Step::Event(_))),
        "answered once"
    );
}

#[test]
fn free_all_and_a_statd_reboot_notice_free_the_host() {
    let mut w = World::new(Arc::new(AcceptAllHandles));
    w.call(
        ctx(NlmProc::Lock, "127.0.0.2"),
        NlmCall::Lock(lock("a", 1, 0, false)),
    );
    assert!(w.core.knows_client(&ClientId::new(b"a".to_vec())));
    // A reboot notice from an unprivileged port is refused.
    let notice = crate::nsm::RebootCallback {
        mon_name: b"a".to_vec(),
        state: 5,
        private: [0; crate::nsm::PRIVATE_SIZE],
    };
    let mut from_user = ctx(NlmProc::NsmNotify, "127.0.0.1");
    from_user.peer.set_port(40000);
    w.call(from_user, NlmCall::NsmNotify(notice.clone()));
    assert!(w.core.knows_client(&ClientId::new(b"a".to_vec())));
    w.call(
        ctx(NlmProc::NsmNotify, "127.0.0.1"),
        NlmCall::NsmNotify(notice),
    );
    assert!(!w.core.knows_client(&ClientId::new(b"a".to_vec())));
    assert_eq!(w.hosts.address_of(b"a"), None);
}
