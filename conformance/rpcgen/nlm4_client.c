/*
 * nlm4_client: a scriptable NLM v4 client built from nlm4.x with rpcgen and
 * libtirpc. It is independent of brlock's Rust code on purpose: the XDR
 * comes from rpcgen, the RPC framing from libtirpc.
 *
 *   nlm4_client [--auth-none] HOST PORT tcp|udp  < commands
 *
 * One command per input line, exactly one result line per command on
 * stdout (flushed at once, so a test can drive it interactively). Blank
 * lines and lines starting with '#' are not commands and print nothing.
 * See README.md for the command language.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <rpc/rpc.h>

#include "nlm4.h"

#define MAX_ARGS 16
#define MAX_BYTES MAXNETOBJ_SZ

static CLIENT *clnt;
static struct sockaddr_in server;
static int use_tcp;
static int auth_none;
static struct timeval call_timeout = { 5, 0 };
static uint64_t cookie_counter;

/* A byte string given on the command line, decoded from text or hex:. */
struct bytes {
    u_int len;
    char buf[MAX_BYTES];
};

/* The status names the command language prints, indexed by nlm4_stats. */
static const char *const stat_names[] = {
    "granted", "denied", "denied_nolocks", "blocked", "denied_grace_period",
    "deadlck", "rofs", "stale_fh", "fbig", "failed",
};

static void print_stat(nlm4_stats s)
{
    if ((unsigned)s < sizeof stat_names / sizeof stat_names[0])
        printf("%s\n", stat_names[s]);
    else
        printf("unknown_stat_%u\n", (unsigned)s);
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* "hex:0A1b…" gives raw bytes (file handles from fh_lookup); anything else is used as is. */
static int parse_bytes(const char *s, struct bytes *out)
{
    if (strncmp(s, "hex:", 4) == 0) {
        s += 4;
        size_t n = strlen(s);
        if (n % 2 != 0 || n / 2 > MAX_BYTES)
            return -1;
        for (size_t i = 0; i < n / 2; i++) {
            int hi = hexval((unsigned char)s[2 * i]);
            int lo = hexval((unsigned char)s[2 * i + 1]);
            if (hi < 0 || lo < 0)
                return -1;
            out->buf[i] = (char)(hi << 4 | lo);
        }
        out->len = (u_int)(n / 2);
        return 0;
    }
    size_t n = strlen(s);
    if (n > MAX_BYTES)
        return -1;
    memcpy(out->buf, s, n);
    out->len = (u_int)n;
    return 0;
}

/* Prints an owner handle the way a test wrote it: text when printable, hex: otherwise. */
static void print_bytes(const char *p, u_int len)
{
    int printable = len > 0;
    for (u_int i = 0; i < len; i++)
        if ((unsigned char)p[i] <= ' ' || (unsigned char)p[i] >= 0x7f)
            printable = 0;
    if (printable && !(len >= 4 && memcmp(p, "hex:", 4) == 0)) {
        fwrite(p, 1, len, stdout);
        return;
    }
    fputs("hex:", stdout);
    for (u_int i = 0; i < len; i++)
        printf("%02x", (unsigned char)p[i]);
}

static int parse_u64(const char *s, uint64_t *out)
{
    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

static int parse_u32(const char *s, uint32_t *out)
{
    uint64_t v;
    if (parse_u64(s, &v) != 0 || v > UINT32_MAX)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

static int parse_bool(const char *s, bool_t *out)
{
    uint32_t v;
    if (parse_u32(s, &v) != 0 || v > 1)
        return -1;
    *out = (bool_t)v;
    return 0;
}

/* Each call carries a new cookie: an 8-byte big-endian counter. */
struct cookie {
    char buf[8];
};

static void next_cookie(struct cookie *c, nlm4_netobj *obj)
{
    uint64_t v = ++cookie_counter;
    for (int i = 7; i >= 0; i--) {
        c->buf[i] = (char)(v & 0xff);
        v >>= 8;
    }
    obj->nlm4_netobj_len = sizeof c->buf;
    obj->nlm4_netobj_val = c->buf;
}

/* On a mismatch stdout gets only "cookie-mismatch"; stderr says what came back, for a human. */
static int cookie_echoed(const struct cookie *c, const nlm4_netobj *reply)
{
    if (reply->nlm4_netobj_len == sizeof c->buf &&
        memcmp(reply->nlm4_netobj_val, c->buf, sizeof c->buf) == 0)
        return 1;
    fprintf(stderr, "nlm4_client: sent cookie hex:");
    for (size_t i = 0; i < sizeof c->buf; i++)
        fprintf(stderr, "%02x", (unsigned char)c->buf[i]);
    fprintf(stderr, ", reply has hex:");
    for (u_int i = 0; i < reply->nlm4_netobj_len; i++)
        fprintf(stderr, "%02x", (unsigned char)reply->nlm4_netobj_val[i]);
    fprintf(stderr, "\n");
    return 0;
}

/* clnt_sperror text may span lines; a result must be one line. */
static void print_rpc_error(void)
{
    char *msg = clnt_sperror(clnt, "");
    char *p = msg;
    while (*p == ':' || *p == ' ')
        p++;
    fputs("rpc-error: ", stdout);
    for (; *p; p++)
        putchar(*p == '\n' || *p == '\r' ? ' ' : *p);
    putchar('\n');
}

static CLIENT *connect_server(void)
{
    int sock = RPC_ANYSOCK;
    CLIENT *c;
    if (use_tcp)
        c = clnttcp_create(&server, NLM_PROG, NLM4_VERS, &sock, 0, 0);
    else
        c = clntudp_create(&server, NLM_PROG, NLM4_VERS, call_timeout, &sock);
    if (c == NULL)
        return NULL;
    clnt_control(c, CLSET_TIMEOUT, (char *)&call_timeout);
    if (!use_tcp) {
        struct timeval retry = { 1, 0 };
        clnt_control(c, CLSET_RETRY_TIMEOUT, (char *)&retry);
    }
    auth_destroy(c->cl_auth);
    c->cl_auth = auth_none ? authnone_create() : authunix_create_default();
    return c;
}

/* A TCP connection the server closed is reopened before the next command, so one
 * dropped connection does not turn the rest of a script into errors. */
static int ensure_connected(void)
{
    if (clnt != NULL)
        return 0;
    clnt = connect_server();
    if (clnt != NULL)
        return 0;
    char *msg = clnt_spcreateerror("");
    char *p = msg;
    while (*p == ':' || *p == ' ')
        p++;
    fputs("rpc-error: ", stdout);
    for (; *p; p++)
        putchar(*p == '\n' || *p == '\r' ? ' ' : *p);
    putchar('\n');
    return -1;
}

static void drop_broken_connection(enum clnt_stat st)
{
    if (use_tcp && (st == RPC_CANTSEND || st == RPC_CANTRECV)) {
        auth_destroy(clnt->cl_auth);
        clnt_destroy(clnt);
        clnt = NULL;
    }
}

static int call(u_long proc, xdrproc_t xargs, void *args, xdrproc_t xres, void *res)
{
    if (ensure_connected() != 0)
        return -1;
    enum clnt_stat st = clnt_call(clnt, proc, xargs, (caddr_t)args, xres, (caddr_t)res, call_timeout);
    if (st != RPC_SUCCESS) {
        print_rpc_error();
        drop_broken_connection(st);
        return -1;
    }
    return 0;
}

/* Storage behind an nlm4_lock whose pointers point into it. */
struct lock_text {
    char caller[LM_MAXSTRLEN + 1];
    struct bytes oh, fh;
};

/* Fills lk from CALLER SVID OH FH; offset and length are parsed by the caller. */
static int parse_lock_owner(char **a, struct lock_text *t, nlm4_lock *lk)
{
    uint32_t svid;
    if (strlen(a[0]) > LM_MAXSTRLEN)
        return -1;
    strcpy(t->caller, a[0]);
    if (parse_u32(a[1], &svid) != 0 || parse_bytes(a[2], &t->oh) != 0 ||
        parse_bytes(a[3], &t->fh) != 0)
        return -1;
    memset(lk, 0, sizeof *lk);
    lk->caller_name = t->caller;
    /* svid is int32 in XNFS; accept 0..2^32-1 and send the same 32 bits. */
    lk->svid = (nlm4_int32)svid;
    lk->oh.nlm4_netobj_len = t->oh.len;
    lk->oh.nlm4_netobj_val = t->oh.buf;
    lk->fh.nlm4_netobj_len = t->fh.len;
    lk->fh.nlm4_netobj_val = t->fh.buf;
    return 0;
}

static int parse_range(char **a, nlm4_lock *lk)
{
    uint64_t off, len;
    if (parse_u64(a[0], &off) != 0 || parse_u64(a[1], &len) != 0)
        return -1;
    lk->l_offset = off;
    lk->l_len = len;
    return 0;
}

static void finish_res(const struct cookie *c, nlm4_res *res)
{
    if (!cookie_echoed(c, &res->cookie)) {
        printf("cookie-mismatch\n");
        fprintf(stderr, "nlm4_client: (status in that reply: %u)\n", (unsigned)res->stat.stat);
    } else
        print_stat(res->stat.stat);
    xdr_free((xdrproc_t)xdr_nlm4_res, (char *)res);
}

/* test CALLER SVID OH FH EXCL OFFSET LEN */
static int cmd_test(int argc, char **a)
{
    if (argc != 7)
        return -1;
    struct lock_text t;
    struct cookie c;
    nlm4_testargs args;
    nlm4_testres res;
    memset(&args, 0, sizeof args);
    if (parse_lock_owner(a, &t, &args.alock) != 0 || parse_bool(a[4], &args.exclusive) != 0 ||
        parse_range(a + 5, &args.alock) != 0)
        return -1;
    next_cookie(&c, &args.cookie);
    memset(&res, 0, sizeof res);
    if (call(NLMPROC4_TEST, (xdrproc_t)xdr_nlm4_testargs, &args, (xdrproc_t)xdr_nlm4_testres, &res) != 0)
        return 0;
    if (!cookie_echoed(&c, &res.cookie)) {
        printf("cookie-mismatch\n");
        fprintf(stderr, "nlm4_client: (status in that reply: %u)\n", (unsigned)res.stat.stat);
    } else if (res.stat.stat == NLM4_DENIED) {
        nlm4_holder *h = &res.stat.nlm4_testrply_u.holder;
        printf("denied holder excl=%d svid=%" PRId32 " oh=", h->exclusive ? 1 : 0, (int32_t)h->svid);
        print_bytes(h->oh.nlm4_netobj_val, h->oh.nlm4_netobj_len);
        printf(" offset=%" PRIu64 " len=%" PRIu64 "\n", (uint64_t)h->l_offset, (uint64_t)h->l_len);
    } else {
        print_stat(res.stat.stat);
    }
    xdr_free((xdrproc_t)xdr_nlm4_testres, (char *)&res);
    return 0;
}

/* lock|nm_lock CALLER SVID OH FH EXCL OFFSET LEN BLOCK RECLAIM STATE */
static int cmd_lock(int argc, char **a, u_long proc)
{
    if (argc != 10)
        return -1;
    struct lock_text t;
    struct cookie c;
    nlm4_lockargs args;
    nlm4_res res;
    uint32_t state;
    memset(&args, 0, sizeof args);
    if (parse_lock_owner(a, &t, &args.alock) != 0 || parse_bool(a[4], &args.exclusive) != 0 ||
        parse_range(a + 5, &args.alock) != 0 || parse_bool(a[7], &args.block) != 0 ||
        parse_bool(a[8], &args.reclaim) != 0 || parse_u32(a[9], &state) != 0)
        return -1;
    args.state = (nlm4_int32)state;
    next_cookie(&c, &args.cookie);
    memset(&res, 0, sizeof res);
    if (call(proc, (xdrproc_t)xdr_nlm4_lockargs, &args, (xdrproc_t)xdr_nlm4_res, &res) == 0)
        finish_res(&c, &res);
    return 0;
}

/* cancel CALLER SVID OH FH EXCL OFFSET LEN BLOCK */
static int cmd_cancel(int argc, char **a)
{
    if (argc != 8)
        return -1;
    struct lock_text t;
    struct cookie c;
    nlm4_cancargs args;
    nlm4_res res;
    memset(&args, 0, sizeof args);
    if (parse_lock_owner(a, &t, &args.alock) != 0 || parse_bool(a[4], &args.exclusive) != 0 ||
        parse_range(a + 5, &args.alock) != 0 || parse_bool(a[7], &args.block) != 0)
        return -1;
    next_cookie(&c, &args.cookie);
    memset(&res, 0, sizeof res);
    if (call(NLMPROC4_CANCEL, (xdrproc_t)xdr_nlm4_cancargs, &args, (xdrproc_t)xdr_nlm4_res, &res) == 0)
        finish_res(&c, &res);
    return 0;
}

/* unlock CALLER SVID OH FH OFFSET LEN */
static int cmd_unlock(int argc, char **a)
{
    if (argc != 6)
        return -1;
    struct lock_text t;
    struct cookie c;
    nlm4_unlockargs args;
    nlm4_res res;
    memset(&args, 0, sizeof args);
    if (parse_lock_owner(a, &t, &args.alock) != 0 || parse_range(a + 4, &args.alock) != 0)
        return -1;
    next_cookie(&c, &args.cookie);
    memset(&res, 0, sizeof res);
    if (call(NLMPROC4_UNLOCK, (xdrproc_t)xdr_nlm4_unlockargs, &args, (xdrproc_t)xdr_nlm4_res, &res) == 0)
        finish_res(&c, &res);
    return 0;
}

/* share CALLER OH FH MODE ACCESS RECLAIM, unshare CALLER OH FH MODE ACCESS */
static int cmd_share(int argc, char **a, u_long proc)
{
    int with_reclaim = proc == NLMPROC4_SHARE;
    if (argc != (with_reclaim ? 6 : 5))
        return -1;
    char caller[LM_MAXSTRLEN + 1];
    struct bytes oh, fh;
    struct cookie c;
    nlm4_shareargs args;
    nlm4_shareres res;
    uint32_t mode, access;
    memset(&args, 0, sizeof args);
    if (strlen(a[0]) > LM_MAXSTRLEN)
        return -1;
    strcpy(caller, a[0]);
    if (parse_bytes(a[1], &oh) != 0 || parse_bytes(a[2], &fh) != 0 || parse_u32(a[3], &mode) != 0 ||
        parse_u32(a[4], &access) != 0 || (with_reclaim && parse_bool(a[5], &args.reclaim) != 0))
        return -1;
    args.share.caller_name = caller;
    args.share.oh.nlm4_netobj_len = oh.len;
    args.share.oh.nlm4_netobj_val = oh.buf;
    args.share.fh.nlm4_netobj_len = fh.len;
    args.share.fh.nlm4_netobj_val = fh.buf;
    /* Sent as given, so a test can also send values outside the enums. */
    args.share.mode = (fsh4_mode)mode;
    args.share.access = (fsh4_access)access;
    next_cookie(&c, &args.cookie);
    memset(&res, 0, sizeof res);
    if (call(proc, (xdrproc_t)xdr_nlm4_shareargs, &args, (xdrproc_t)xdr_nlm4_shareres, &res) != 0)
        return 0;
    if (!cookie_echoed(&c, &res.cookie))
        printf("cookie-mismatch\n");
    else
        print_stat(res.stat);
    xdr_free((xdrproc_t)xdr_nlm4_shareres, (char *)&res);
    return 0;
}

/* free_all NAME STATE: FREE_ALL has no reply worth waiting for, so send it one-way. */
static int cmd_free_all(int argc, char **a)
{
    if (argc != 2)
        return -1;
    char name[LM_MAXNAMELEN + 1];
    uint32_t state;
    nlm4_notify args;
    if (strlen(a[0]) > LM_MAXNAMELEN || parse_u32(a[1], &state) != 0)
        return -1;
    strcpy(name, a[0]);
    args.name = name;
    args.state = (nlm4_int32)state;
    /* A zero timeout makes libtirpc send the call and return RPC_TIMEDOUT without reading;
     * a late reply, if the server sends one, is skipped by xid on the next call. */
    struct timeval zero = { 0, 0 };
    if (ensure_connected() != 0)
        return 0;
    enum clnt_stat st = clnt_call(clnt, NLMPROC4_FREE_ALL, (xdrproc_t)xdr_nlm4_notify, (caddr_t)&args,
                                  (xdrproc_t)xdr_void, NULL, zero);
    if (st == RPC_SUCCESS || st == RPC_TIMEDOUT) {
        printf("ok\n");
    } else {
        print_rpc_error();
        drop_broken_connection(st);
    }
    return 0;
}

static int cmd_null(int argc)
{
    if (argc != 0)
        return -1;
    if (call(NLMPROC4_NULL, (xdrproc_t)xdr_void, NULL, (xdrproc_t)xdr_void, NULL) == 0)
        printf("ok\n");
    return 0;
}

/* sleep MS: lets a script wait for a server-side timer without a second process. */
static int cmd_sleep(int argc, char **a)
{
    uint32_t ms;
    if (argc != 1 || parse_u32(a[0], &ms) != 0)
        return -1;
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
    printf("ok\n");
    return 0;
}

/* Returns -1 when the line is not a well-formed command. */
static int run(const char *cmd, int argc, char **a)
{
    if (strcmp(cmd, "test") == 0)
        return cmd_test(argc, a);
    if (strcmp(cmd, "lock") == 0)
        return cmd_lock(argc, a, NLMPROC4_LOCK);
    if (strcmp(cmd, "nm_lock") == 0)
        return cmd_lock(argc, a, NLMPROC4_NM_LOCK);
    if (strcmp(cmd, "cancel") == 0)
        return cmd_cancel(argc, a);
    if (strcmp(cmd, "unlock") == 0)
        return cmd_unlock(argc, a);
    if (strcmp(cmd, "share") == 0)
        return cmd_share(argc, a, NLMPROC4_SHARE);
    if (strcmp(cmd, "unshare") == 0)
        return cmd_share(argc, a, NLMPROC4_UNSHARE);
    if (strcmp(cmd, "free_all") == 0)
        return cmd_free_all(argc, a);
    if (strcmp(cmd, "null") == 0)
        return cmd_null(argc);
    if (strcmp(cmd, "sleep") == 0)
        return cmd_sleep(argc, a);
    return -1;
}

static int usage(void)
{
    fprintf(stderr, "usage: nlm4_client [--auth-none] HOST PORT tcp|udp < commands\n");
    return 2;
}

int main(int argc, char **argv)
{
    int i = 1;
    if (i < argc && strcmp(argv[i], "--auth-none") == 0) {
        auth_none = 1;
        i++;
    }
    if (argc - i != 3)
        return usage();
    const char *host = argv[i], *port_text = argv[i + 1], *proto = argv[i + 2];

    uint32_t port;
    memset(&server, 0, sizeof server);
    server.sin_family = AF_INET;
    if (inet_pton(AF_INET, host, &server.sin_addr) != 1) {
        fprintf(stderr, "nlm4_client: HOST must be an IPv4 address: %s\n", host);
        return 2;
    }
    /* A port of 0 would make libtirpc ask rpcbind, which this client must not depend on. */
    if (parse_u32(port_text, &port) != 0 || port == 0 || port > 65535) {
        fprintf(stderr, "nlm4_client: bad PORT: %s\n", port_text);
        return 2;
    }
    server.sin_port = htons((uint16_t)port);
    if (strcmp(proto, "tcp") == 0)
        use_tcp = 1;
    else if (strcmp(proto, "udp") != 0)
        return usage();

    /* A server that closes the connection must produce an rpc-error line, not kill us. */
    signal(SIGPIPE, SIG_IGN);
    clnt = connect_server();
    if (clnt == NULL) {
        fprintf(stderr, "nlm4_client: %s\n", clnt_spcreateerror(host));
        return 1;
    }

    setvbuf(stdout, NULL, _IOLBF, 0);
    char line[8192];
    while (fgets(line, sizeof line, stdin) != NULL) {
        char *args[MAX_ARGS + 1];
        int n = 0;
        for (char *tok = strtok(line, " \t\r\n"); tok != NULL; tok = strtok(NULL, " \t\r\n")) {
            if (n == MAX_ARGS + 1) {
                n++;
                break;
            }
            args[n++] = tok;
        }
        if (n == 0 || args[0][0] == '#')
            continue;
        if (n > MAX_ARGS + 1 || run(args[0], n - 1, args + 1) != 0)
            printf("usage-error: %s\n", args[0]);
    }

    if (clnt != NULL) {
        auth_destroy(clnt->cl_auth);
        clnt_destroy(clnt);
    }
    return 0;
}
