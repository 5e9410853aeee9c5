/*
 * gw-agent's metrics (gw_metrics.h). Every value comes from a structure the
 * agent already keeps for its stop lines and /health, read with relaxed
 * atomic loads or the owner's own accessor (snapshot_store_status,
 * live_counts, crypt_pool_queued): the same numbers, never a copy that
 * could drift. Names are the README's table ("Metrics").
 */
#include "gw_metrics.h"

#include <stdio.h>

#include "clock.h"

#define LOAD(x) ((uint64_t)atomic_load_explicit(&(x), memory_order_relaxed))

static void counter_l(struct prom_out *o, const char *name, const char *label, const char *value,
                      uint64_t v)
{
    struct prom_label l = {label, value};
    prom_sample_u64(o, name, &l, 1, v);
}

static void render_verdicts(struct gw_metrics *m, struct prom_out *o)
{
    struct verdict_stats *vs = &m->gw->by_reason;
    prom_head(o, "gw_verdicts_total", "counter",
              "Verdicts answered to HAProxy, by status and reason.");
    for (int i = 0; i < VR_COUNT; i++) {
        struct prom_label l[2] = {{"status", verdict_reasons[i].status},
                                  {"reason", verdict_reasons[i].label}};
        prom_sample_u64(o, "gw_verdicts_total", l, 2, LOAD(vs->by_reason[i]));
    }
    prom_hist_write(o, "gw_verdict_duration_seconds",
                    "Time from a NOTIFY frame read to its ACK queued (balance and hash checks "
                    "included).",
                    &m->spoa->notify_latency);
    prom_head(o, "gw_provider_requests_total", "counter",
              "Requests allowed to each upstream provider (label: provider slug; _other beyond "
              "128 providers).");
    unsigned n = atomic_load_explicit(&vs->nproviders, memory_order_acquire);
    for (unsigned i = 0; i < n; i++)
        counter_l(o, "gw_provider_requests_total", "provider", vs->providers[i].slug,
                  LOAD(vs->providers[i].requests));
    counter_l(o, "gw_provider_requests_total", "provider", "_other", LOAD(vs->providers_other));

    prom_head(o, "gw_balance_fail_open_total", "counter",
              "Balance look-ups that allowed the request without a usable balance, by reason.");
    counter_l(o, "gw_balance_fail_open_total", "reason", "missing", LOAD(m->gw->balance_missing));
    counter_l(o, "gw_balance_fail_open_total", "reason", "unreachable",
              LOAD(m->gw->balance_unreachable));
    counter_l(o, "gw_balance_fail_open_total", "reason", "timeout", LOAD(m->gw->balance_timeout));
    counter_l(o, "gw_balance_fail_open_total", "reason", "unreadable",
              LOAD(m->gw->balance_unreadable));
    prom_counter(o, "gw_hash_checks_total", "Password hashes checked on the crypt pool.",
                 LOAD(m->gw->hash_checks));
    prom_counter(o, "gw_hash_queue_full_total",
                 "Requests refused with 503 because the crypt pool's queue was full.",
                 LOAD(m->gw->hash_queue_full));
    prom_gauge(o, "gw_crypt_queue_length", "Password hash checks waiting for a crypt thread.",
               (double)crypt_pool_queued(m->crypt));
    prom_counter(o, "gw_bad_messages_total",
                 "NOTIFY frames without usable arguments (a HAProxy configuration error).",
                 LOAD(m->gw->bad_messages));
}

static void render_spoa(struct gw_metrics *m, struct prom_out *o)
{
    struct spoa_stats *s = m->spoa;
    prom_counter(o, "gw_spoa_connections_total", "SPOP connections accepted from HAProxy.",
                 LOAD(s->conns_accepted));
    prom_gauge(o, "gw_spoa_connections", "SPOP connections open now.", (double)LOAD(s->conns_open));
    prom_counter(o, "gw_spoa_healthchecks_total", "SPOP health-check HELLOs answered.",
                 LOAD(s->healthchecks));
    prom_counter(o, "gw_spoa_notify_frames_total", "NOTIFY frames received.",
                 LOAD(s->notify_frames));
    prom_counter(o, "gw_spoa_ack_frames_total", "ACK frames sent.", LOAD(s->ack_frames));
    prom_counter(o, "gw_spoa_acks_dropped_total",
                 "Answers dropped because HAProxy's connection had closed.", LOAD(s->acks_dropped));
    prom_counter(o, "gw_spoa_acks_too_big_total",
                 "ACKs that exceeded the frame size and were replaced by an error.",
                 LOAD(s->acks_too_big));
    prom_counter(o, "gw_spoa_protocol_errors_total",
                 "SPOP connections closed with a DISCONNECT for a protocol error.",
                 LOAD(s->proto_errors));
}

/* Provider health (health.h), one sample per provider in the snapshot: a
 * bounded label set (the proxies table). */
static void render_health(struct gw_metrics *m, struct prom_out *o)
{
    if (!m->health) return;
    const struct snapshot *snap = snapshot_store_current(m->store, &m->ref);
    const struct snap_provider *const *list[2];
    size_t n[2] = {snapshot_providers(snap, true, &list[0]),
                   snapshot_providers(snap, false, &list[1])};
    int64_t now = clock_mono_ms();
    static const char *const fams[][3] = {
        {"gw_provider_in", "gauge",
         "1 when the provider takes requests (in), 0.5 half-open, 0 out."},
        {"gw_provider_failures_in_a_row", "gauge", "Upstream failures in a row (provider health)."},
        {"gw_provider_times_out_total", "counter", "Times the provider was taken out."},
    };
    for (int f = 0; f < 3; f++) {
        prom_head(o, fams[f][0], fams[f][1], fams[f][2]);
        for (int g = 0; g < 2; g++)
            for (size_t i = 0; i < n[g]; i++) {
                const struct snap_provider *p = list[g][i];
                struct health_view v = {.state = HEALTH_IN};
                health_view(m->health, p->slug, p->slug_len, now, &v);
                struct prom_label l = {"provider", p->slug};
                if (f == 0)
                    prom_sample_f64(o, fams[f][0], &l, 1,
                                    v.state == HEALTH_IN    ? 1
                                    : v.state == HEALTH_OUT ? 0
                                                            : 0.5);
                else
                    prom_sample_u64(o, fams[f][0], &l, 1, f == 1 ? v.failures : v.times_out);
            }
    }
    snapshot_ref_release(&m->ref);
}

static void render_state(struct gw_metrics *m, struct prom_out *o)
{
    struct snapshot_store_status st;
    snapshot_store_status(m->store, &st);
    const struct snapshot *snap = snapshot_store_current(m->store, &m->ref);
    /* age as /health computes it: since the data was read or confirmed unchanged */
    int64_t fresh_ms = snapshot_loaded_at_ms(snap);
    if (st.last_ok_ms > fresh_ms) fresh_ms = st.last_ok_ms;
    int64_t age_ms = clock_wall_ms() - fresh_ms;
    const struct snapshot_skips *sk = snapshot_skipped(snap);

    prom_gauge(o, "gw_postgres_up", "1 when the last snapshot load from PostgreSQL succeeded.",
               st.postgres_ok ? 1 : 0);
    prom_gauge(o, "gw_redis_up",
               "1 when the verdict threads' Redis connections are up (1 with balance checks "
               "off).",
               m->balance_checks ? (atomic_load(&m->gw->redis_ok) ? 1 : 0) : 1);
    prom_gauge(o, "gw_snapshot_age_seconds",
               "Seconds since the snapshot's data was read from PostgreSQL or confirmed "
               "unchanged.",
               age_ms < 0 ? 0 : (double)age_ms / 1000.0);
    prom_gauge(o, "gw_snapshot_generation", "Snapshots published since start.",
               (double)st.generation);
    prom_gauge(o, "gw_snapshot_from_disk",
               "1 when the current snapshot was read from the snapshot file.",
               st.from_disk ? 1 : 0);
    prom_head(o, "gw_snapshot_loads_total", "counter", "Snapshot loads from PostgreSQL.");
    counter_l(o, "gw_snapshot_loads_total", "result", "ok", st.loads_ok);
    counter_l(o, "gw_snapshot_loads_total", "result", "failed", st.loads_failed);
    prom_gauge(o, "gw_snapshot_last_load_duration_seconds",
               "Duration of the last successful load (queries, build, DNS).",
               (double)st.last_load_ms / 1000.0);
    prom_head(o, "gw_snapshot_rows", "gauge", "Rows in the current snapshot, by table.");
    counter_l(o, "gw_snapshot_rows", "table", "users", snapshot_user_count(snap));
    counter_l(o, "gw_snapshot_rows", "table", "proxies", snapshot_provider_count(snap));
    counter_l(o, "gw_snapshot_rows", "table", "authorized_ips", snapshot_ip_count(snap));
    prom_head(o, "gw_snapshot_rows_skipped", "gauge",
              "Rows refused while building the current snapshot, by reason.");
    counter_l(o, "gw_snapshot_rows_skipped", "reason", "bad_cidr", sk->bad_cidr);
    counter_l(o, "gw_snapshot_rows_skipped", "reason", "bad_port_range", sk->bad_port_range);
    counter_l(o, "gw_snapshot_rows_skipped", "reason", "bad_country_format",
              sk->bad_country_format);
    counter_l(o, "gw_snapshot_rows_skipped", "reason", "bad_template", sk->bad_template);
    counter_l(o, "gw_snapshot_rows_skipped", "reason", "unresolved_host", sk->unresolved_host);
    counter_l(o, "gw_snapshot_rows_skipped", "reason", "bad_user", sk->bad_user);
    counter_l(o, "gw_snapshot_rows_skipped", "reason", "duplicate", sk->duplicate);
    snapshot_ref_release(&m->ref);
}

static void render_billing(struct gw_metrics *m, struct prom_out *o)
{
    struct billing_stats *b = m->billing;
    int64_t q = atomic_load(&m->gw->queue_length);
    if (q >= 0)
        prom_gauge(o, "gw_billing_queue_length",
                   "Records waiting in the Redis list traffic:logs (polled every 2 s).", (double)q);
    if (!b) return;
    prom_counter(o, "gw_billing_records_received_total", "Records read from HAProxy's ring.",
                 LOAD(b->received));
    prom_counter(o, "gw_billing_records_spooled_total", "Billable records written to the spool.",
                 LOAD(b->billed));
    prom_counter(o, "gw_billing_records_not_billed_total",
                 "Records of refused requests (not billed).", LOAD(b->not_billed));
    prom_counter(o, "gw_billing_records_malformed_total",
                 "Records refused: bad framing or fields, or a spool write error.",
                 LOAD(b->malformed));
    prom_counter(o, "gw_billing_records_duplicate_total",
                 "Records dropped because their request id was seen before.", LOAD(b->duplicates));
    prom_counter(o, "gw_billing_records_pushed_total",
                 "Records acknowledged by Redis (RPUSH traffic:logs).", LOAD(b->pushed));
    prom_counter(o, "gw_billing_records_recovered_total",
                 "Records billed from a read-back of HAProxy's ring.", LOAD(b->recovered));
    prom_counter(o, "gw_billing_ring_readbacks_total",
                 "Read-backs of HAProxy's ring through its CLI (failed ones included).",
                 LOAD(b->replays));
    prom_counter(o, "gw_billing_ring_readback_failures_total",
                 "Read-backs of HAProxy's ring that failed.", LOAD(b->replay_bad));
    prom_counter(o, "gw_billing_spool_full_total", "Times reading paused on a full spool.",
                 LOAD(b->spool_full));
    prom_gauge(o, "gw_billing_spool_bytes", "Bytes in the spool not yet pushed to Redis.",
               (double)LOAD(b->spool_size));
}

static void render_live(struct gw_metrics *m, struct prom_out *o)
{
    if (!m->live || !m->meter) return;
    struct live_counts lc = live_counts(m->live);
    struct meter_stats *ms = m->meter;
    prom_counter(o, "gw_live_streams_registered_total", "Allowed streams registered live.",
                 lc.registered);
    prom_counter(o, "gw_live_streams_refused_total",
                 "Allowed streams not registered (registry full, long names, no memory).",
                 lc.refused);
    prom_counter(o, "gw_live_streams_finished_total", "Streams removed by their end record.",
                 lc.finished);
    prom_counter(o, "gw_live_streams_pruned_total",
                 "Streams removed because no dump showed them any more.", lc.pruned);
    prom_gauge(o, "gw_live_streams", "Streams registered now.", (double)lc.entries);
    prom_counter(o, "gw_live_dumps_total", "\"show sess all\" dumps read to the end.",
                 LOAD(ms->dumps));
    prom_counter(o, "gw_live_dump_errors_total", "Dumps that failed (CLI down, timeout).",
                 LOAD(ms->dump_errors));
    prom_counter(o, "gw_live_progress_total", "Stream totals sent to Redis.", LOAD(ms->progress));
    prom_counter(o, "gw_live_progress_lost_total", "Stream totals not sent: Redis not connected.",
                 LOAD(ms->progress_lost));
    prom_counter(o, "gw_live_cut_messages_total", "gw:cut messages heard.", LOAD(ms->cut_messages));
    prom_counter(o, "gw_live_sessions_shut_total", "\"shutdown session\" commands sent.",
                 LOAD(ms->sessions_shut));
    prom_counter(o, "gw_live_early_dumps_total",
                 "Dumps brought forward: a user about to run out of balance.",
                 LOAD(ms->early_dumps));
    prom_gauge(o, "gw_live_last_dump_seconds", "Duration of the last dump.",
               (double)LOAD(ms->last_dump_us) / 1e6);
    prom_gauge(o, "gw_live_last_dump_streams", "Streams in the last dump.",
               (double)LOAD(ms->last_streams));
    prom_counter(o, "gw_live_unregistered_total",
                 "Allowed requests not metered live (counted when they end).",
                 LOAD(m->gw->live_unregistered));
}

void gw_metrics_render(void *arg, struct prom_out *o)
{
    struct gw_metrics *m = arg;
    render_verdicts(m, o);
    render_spoa(m, o);
    render_state(m, o);
    render_billing(m, o);
    render_live(m, o);
    render_health(m, o);
}
