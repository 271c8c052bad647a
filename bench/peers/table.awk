# Markdown table of load-client summaries (summary.txt: key=value), one row per file, in the
# column set of -v kind=w1|w2|w4|w5. Files are .../<workload>/<system>/run<N>/summary.txt.
# Used by scripts/bench-peers.sh.
function n(x) { # thousands separators
    x = sprintf("%.0f", x)
    s = ""
    neg = (x ~ /^-/)
    if (neg) x = substr(x, 2)
    while (length(x) > 3) { s = "," substr(x, length(x) - 2) s; x = substr(x, 1, length(x) - 3) }
    return (neg ? "-" : "") x s
}
function mb(x) { return x < 0 ? "–" : sprintf("%.0f", x) }
function row(    sys, run, parts, k, slowed, rss, q) {
    k = split(prev, parts, "/")
    sys = parts[k - 2]; run = parts[k - 1]
    rss = (v["rss_b_mb"] < 0 ? "" : "B " mb(v["rss_b_mb"]) " / ") "P " mb(v["rss_p_mb"]) " / C " mb(v["rss_c_mb"])
    lat = sprintf("%.1f / %.1f / %.1f", v["p50_ms"], v["p99_ms"], v["max_ms"])
    if (kind == "w1") {
        printf "| %s | %s | %s | %.1f | %s | %s | %s | %s | %s | %s |\n", sys, run, n(v["goodput"]),
            v["goodput"] * 100 / 1e6, n(v["accepted"]), lat, rss, mb(v["disk_mb"]), n(v["lost"]), n(v["dups"])
    } else if (kind == "w2" || kind == "w3") {
        slowed = sprintf("in send %.0f %%; %s stalls >1 ms; max send %.0f ms", v["in_send_pct"], n(v["stalls"]), v["max_send_ms"])
        if (v["rejected"] > 0) slowed = slowed "; rejected " v["reject_reason"] " ×" n(v["rejected"])
        q = v["queued"] < 0 ? "–" : n(v["queued"])
        extra = v["burst_max_s"] != "" ? sprintf(" | %.2f / %.2f", v["burst_mean_s"], v["burst_max_s"]) : ""
        printf "| %s | %s | %s | %s | %s | %s / %s / %s | %s | %s | %s | %s | %s | %s | %s | %s | %.1f | %s%s |\n",
            sys, run, n(v["offered"]), n(v["accepted"]), (v["accepted_steady"] < 0 ? "–" : n(v["accepted_steady"])),
            n(v["sent"]), n(v["acked"]), n(v["rejected"]), slowed, rss, mb(v["disk_mb"]), n(v["consumed"]),
            n(v["goodput"]), n(v["lost"]), q, lat, v["drain_s"], v["stop"], extra
    } else if (kind == "w4") {
        printf "| %s | %s | fast (capacity %s/s) | %s | %s | %s | %s | %s | %s |\n", sys, run, n(v["capacity"]),
            n(v["p0_accepted"]), n(v["consumed"]), n(v["goodput"]), lat, n(v["p0_lost"]), v["stop"]
        if (v["c1_consumed"] != "")
            printf "| %s | %s | slow (capacity %s/s) | %s | %s | %s | %.1f / %.1f / %.1f | %s | %s |\n", sys, run,
                n(v["c1_capacity"]), n(v["p1_accepted"]), n(v["c1_consumed"]), n(v["c1_goodput"]),
                v["c1_p50_ms"], v["c1_p99_ms"], v["c1_max_ms"], n(v["p1_lost"]), v["c1_stop"]
    } else if (kind == "w5") {
        tot = v["p0_acked"] + v["p1_acked"] + v["p2_acked"]
        # Max-min fair shares of the consumer's capacity for the three intended rates.
        cap = v["capacity"]; left = cap; m = 3
        for (i = 0; i < 3; i++) { d[i] = v["p" i "_intended"]; got[i] = 0 }
        for (round = 0; round < 3; round++) {
            share = left / (m > 0 ? m : 1)
            for (i = 0; i < 3; i++) if (!got[i] && d[i] <= share) { fair[i] = d[i]; got[i] = 1; left -= d[i]; m-- }
        }
        for (i = 0; i < 3; i++) if (!got[i]) fair[i] = left / (m > 0 ? m : 1)
        for (i = 0; i < 3; i++)
            printf "| %s | %s | p%d | %s | %s | %s | %.1f %% | %s | %.0f %% | %s | %s |\n", sys, run, i,
                n(v["p" i "_intended"]), n(v["p" i "_offered"]), n(v["p" i "_accepted"]),
                (tot > 0 ? 100 * v["p" i "_acked"] / tot : 0), n(fair[i]),
                (fair[i] > 0 ? 100 * v["p" i "_accepted"] / fair[i] : 0), n(v["p" i "_consumed"]), n(v["p" i "_lost"])
    }
}
FNR == 1 && NR > 1 { row(); delete v }
{
    prev = FILENAME
    i = index($0, "=")
    val = substr($0, i + 1)
    if (val ~ /^-?[0-9]+(\.[0-9]+)?$/) val = val + 0 # compare numbers as numbers
    v[substr($0, 1, i - 1)] = val
}
BEGIN {
    if (kind == "w1") {
        print "| system | run | e2e msgs/s | e2e MB/s | producer acked/s | lat p50 / p99 / max (ms) | peak RSS MB | disk MB | lost | dup |"
        print "|---|---|---:|---:|---:|---|---|---:|---:|---:|"
    } else if (kind == "w2" || kind == "w3") {
        print "| system | run | offered msgs/s | accepted msgs/s | accepted/s after 5 s | sent / acked / rejected | how the producer was slowed | peak RSS MB | disk MB | consumed | goodput msgs/s | lost (acked, not consumed) | still queued | lat p50 / p99 / max (ms) | drain s | consumer stop |" (kind == "w3" ? " burst completion mean / max s |" : "")
        print "|---|---|---:|---:|---:|---|---|---|---:|---:|---:|---:|---:|---|---:|---|" (kind == "w3" ? "---:|" : "")
    } else if (kind == "w4") {
        print "| system | run | topic | accepted msgs/s | consumed | goodput msgs/s | lat p50 / p99 / max (ms) | lost | consumer stop |"
        print "|---|---|---|---:|---:|---:|---|---:|---|"
    } else {
        print "| system | run | producer | intended msgs/s | offered msgs/s | accepted msgs/s | share of accepted | max-min fair share msgs/s | accepted / fair | consumed | lost |"
        print "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    }
}
END { if (NR > 0) row() }
