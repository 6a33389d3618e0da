//! The admin endpoints' handlers: check the query, ask the core task (`server::admin` builds the
//! rows there), answer JSON. A bad query is a 400 naming the parameter; a server whose core task
//! has stopped answers 503.

use serde::Serialize;

use super::query::Params;
use super::{HttpContext, Request, Response};
use crate::server::admin::{self, Capped, DEFAULT_LIMIT, Filter, MAX_LIMIT, Readiness};
use crate::server::startup::redacted;
use brlock_core::{ClientId, FileId};

/// The parameters of `/locks`, `/waiters` and `/shares`.
const LISTING: &[&str] = &["file", "owner", "client", "limit"];

fn bad_request(message: String) -> Response {
    Response::error(400, message)
}

fn stopped() -> Response {
    Response::error(503, "the server is shutting down")
}

fn params(request: &Request, allowed: &[&str]) -> Result<Params, Response> {
    Params::parse(&request.query, allowed).map_err(bad_request)
}

/// `limit`: 1 to [`MAX_LIMIT`], [`DEFAULT_LIMIT`] when absent.
fn limit(params: &Params) -> Result<usize, Response> {
    match params.get("limit") {
        None => Ok(DEFAULT_LIMIT),
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                bad_request(format!(
                    "limit: {text:?} is not a whole number from 1 to {MAX_LIMIT}"
                ))
            }),
    }
}

/// Hex bytes, with or without a `0x` in front.
fn hex_bytes(text: &str) -> Option<Vec<u8>> {
    let hex = text.strip_prefix("0x").unwrap_or(text);
    if hex.is_empty() || !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

fn filter(params: &Params) -> Result<Filter, Response> {
    let file = match params.get("file") {
        None => None,
        Some(text) => Some(FileId::new(hex_bytes(text).ok_or_else(|| {
            bad_request(format!(
                "file: {text:?} is not a file handle in hex (as the listings show it)"
            ))
        })?)),
    };
    let owner = match params.get("owner") {
        Some("") => {
            return Err(bad_request(
                "owner: empty; write caller_name/svid/oh".into(),
            ));
        }
        owner => owner.map(str::to_string),
    };
    // A client is shown as its caller_name, or as 0x-hex when that is not printable text.
    let client = match params.get("client") {
        Some("") => return Err(bad_request("client: empty; write a caller_name".into())),
        Some(text) => Some(
            match text.strip_prefix("0x").and_then(|_| hex_bytes(text)) {
                Some(bytes) => ClientId::new(bytes),
                None => ClientId::from(text),
            },
        ),
        None => None,
    };
    Ok(Filter {
        file,
        owner,
        client,
    })
}

/// `{"<key>": [rows], "truncated": bool, "limit": n}`, each entry turned into its row. On the
/// blocking pool: 100,000 rows take tens of milliseconds to format, which would hold up the
/// runtime's worker (brlockd runs one) and so every NLM request behind it.
async fn listing<E, R>(
    key: &'static str,
    entries: Capped<E>,
    limit: usize,
    row: fn(E) -> R,
) -> Response
where
    E: Send + 'static,
    R: Serialize + 'static,
{
    let encode = move || {
        let truncated = entries.truncated;
        // Written around the rows' own encoding (no intermediate `Value` tree of 100,000 rows).
        let mut body = format!("{{\"{key}\":").into_bytes();
        if let Err(e) = serde_json::to_writer(&mut body, &entries.map(row).rows) {
            return Response::error(500, format!("cannot encode the rows: {e}"));
        }
        body.extend_from_slice(
            format!(",\"truncated\":{truncated},\"limit\":{limit}}}\n").as_bytes(),
        );
        Response::new(200, super::JSON, body)
    };
    tokio::task::spawn_blocking(encode)
        .await
        .unwrap_or_else(|e| Response::error(500, format!("encoding the answer failed: {e}")))
}

pub async fn locks(ctx: HttpContext, request: Request) -> Response {
    let (filter, limit) =
        match params(&request, LISTING).and_then(|p| Ok((filter(&p)?, limit(&p)?))) {
            Ok(q) => q,
            Err(response) => return response,
        };
    match ctx
        .core
        .ask(move |v| admin::locks(v.core, v.now, &filter, limit))
        .await
    {
        Some(entries) => listing("locks", entries, limit, admin::LockEntry::row).await,
        None => stopped(),
    }
}

pub async fn waiters(ctx: HttpContext, request: Request) -> Response {
    let (filter, limit) =
        match params(&request, LISTING).and_then(|p| Ok((filter(&p)?, limit(&p)?))) {
            Ok(q) => q,
            Err(response) => return response,
        };
    match ctx
        .core
        .ask(move |v| admin::waiters(v.core, v.now, &filter, limit))
        .await
    {
        Some(entries) => listing("waiters", entries, limit, admin::WaiterEntry::row).await,
        None => stopped(),
    }
}

pub async fn shares(ctx: HttpContext, request: Request) -> Response {
    let (filter, limit) =
        match params(&request, LISTING).and_then(|p| Ok((filter(&p)?, limit(&p)?))) {
            Ok(q) => q,
            Err(response) => return response,
        };
    match ctx
        .core
        .ask(move |v| admin::shares(v.core, &filter, limit))
        .await
    {
        Some(entries) => listing("shares", entries, limit, admin::ShareEntry::row).await,
        None => stopped(),
    }
}

pub async fn wait_for(ctx: HttpContext, request: Request) -> Response {
    let limit = match params(&request, &["limit"]).and_then(|p| limit(&p)) {
        Ok(limit) => limit,
        Err(response) => return response,
    };
    match ctx.core.ask(move |v| admin::wait_for(v.core, limit)).await {
        Some(graph) => {
            #[derive(Serialize)]
            struct Body {
                edges: Vec<admin::EdgeRow>,
                truncated: bool,
                limit: usize,
                cycles: Vec<Vec<admin::OwnerRow>>,
            }
            let encode = move || {
                let (edges, cycles) = graph.rows();
                Response::json(
                    200,
                    &Body {
                        edges: edges.rows,
                        truncated: edges.truncated,
                        limit,
                        cycles,
                    },
                )
            };
            tokio::task::spawn_blocking(encode)
                .await
                .unwrap_or_else(|e| {
                    Response::error(500, format!("encoding the answer failed: {e}"))
                })
        }
        None => stopped(),
    }
}

pub async fn clients(ctx: HttpContext, request: Request) -> Response {
    let limit = match params(&request, &["limit"]).and_then(|p| limit(&p)) {
        Ok(limit) => limit,
        Err(response) => return response,
    };
    match ctx.core.ask(move |v| admin::clients(v, limit)).await {
        Some(rows) => listing("clients", rows, limit, |row| row).await,
        None => stopped(),
    }
}

pub async fn grace(ctx: HttpContext, request: Request) -> Response {
    if let Err(response) = params(&request, &[]) {
        return response;
    }
    match ctx.core.ask(|v| admin::grace(v.core)).await {
        Some(grace) => Response::json(200, &grace),
        None => stopped(),
    }
}

/// The effective settings (`brlockd --print-config`, as JSON: a setting not set is `null`), with
/// the store's password hidden.
pub async fn config(ctx: HttpContext, request: Request) -> Response {
    if let Err(response) = params(&request, &[]) {
        return response;
    }
    let mut settings = (*ctx.settings).clone();
    settings.store = settings.store.as_deref().map(redacted);
    Response::json(200, &settings)
}

/// The process is alive and its HTTP listener answers (it does not ask the core task).
pub async fn healthz(_ctx: HttpContext, request: Request) -> Response {
    if let Err(response) = params(&request, &[]) {
        return response;
    }
    Response::json(200, &serde_json::json!({ "status": "alive" }))
}

/// 200 when serving NLM, else 503, with the state and why.
pub async fn readyz(ctx: HttpContext, request: Request) -> Response {
    if let Err(response) = params(&request, &[]) {
        return response;
    }
    let role = ctx.role.borrow().clone();
    let readiness = match Readiness::of_role(&role) {
        Some(not_serving) => not_serving,
        None => ctx
            .core
            .ask(|v| v.readiness)
            .await
            .unwrap_or(Readiness::Stopped),
    };
    let status = if readiness.is_ready() { 200 } else { 503 };
    let mut body = serde_json::json!({
        "ready": readiness.is_ready(),
        "state": readiness,
        "reason": readiness.reason(),
    });
    match role {
        crate::leader::Role::Standby { leader, since } if !leader.is_empty() => {
            body["leader"] = leader.into();
            body["leader_since"] = since.into();
        }
        crate::leader::Role::SteppedDown { reason } => body["reason"] = reason.into(),
        _ => {}
    }
    Response::json(status, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(raw: &str) -> Result<(Filter, usize), u16> {
        let request = Request {
            method: "GET".into(),
            path: "/locks".into(),
            query: raw.into(),
            headers: Vec::new(),
        };
        params(&request, LISTING)
            .and_then(|p| Ok((filter(&p)?, limit(&p)?)))
            .map_err(|r| r.status)
    }

    #[test]
    fn listing_queries_parse_into_a_filter_and_a_limit() {
        assert_eq!(query(""), Ok((Filter::default(), DEFAULT_LIMIT)));
        let (f, limit) = query("file=0x01ab&owner=host-a%2F7&client=host-a&limit=5").unwrap();
        assert_eq!(f.file, Some(FileId::new(vec![0x01, 0xab])));
        assert_eq!(f.owner.as_deref(), Some("host-a/7"));
        assert_eq!(f.client, Some(ClientId::from("host-a")));
        assert_eq!(limit, 5);
        assert_eq!(
            query("file=01AB").unwrap().0.file,
            Some(FileId::new(vec![1, 0xab]))
        );
        // A client shown as 0x-hex is found by that spelling; other text is the name itself.
        assert_eq!(
            query("client=0x00ff").unwrap().0.client,
            Some(ClientId::new(vec![0, 0xff]))
        );
        assert_eq!(
            query("client=0xzz").unwrap().0.client,
            Some(ClientId::from("0xzz"))
        );
        assert_eq!(query(&format!("limit={MAX_LIMIT}")).unwrap().1, MAX_LIMIT);
    }

    #[test]
    fn bad_listing_queries_are_400() {
        for raw in [
            "limit=0",
            "limit=-1",
            "limit=x",
            "limit=100001",
            "file=abc",
            "file=zz",
            "file=",
            "owner=",
            "client=",
            "sort=file",
            "limit=1&limit=2",
        ] {
            assert_eq!(query(raw), Err(400), "{raw}");
        }
    }
}
