/**
 * The console's page and style. Static text with no data in it: the script fetches everything
 * with the caller's token. Kept here rather than as files to copy, so the build has one step
 * more (the script) and nothing to forget.
 */
export const CONSOLE_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>numerous-tasks console</title>
<link rel="stylesheet" href="/console/app.css">
<script type="module" src="/console/app/console-app.js"></script>
</head>
<body>
<header>
  <strong>numerous-tasks</strong>
  <nav>
    <a href="#/">Overview</a>
    <a href="#/instances">Instances</a>
    <a href="#/definitions">Definitions</a>
    <a href="#/schedules">Schedules</a>
    <a href="#/cluster">Cluster</a>
  </nav>
  <span id="live" class="live" title="live updates">offline</span>
  <button id="signout" type="button" hidden>Forget token</button>
</header>
<main id="main"><p>Loading…</p></main>
</body>
</html>
`;

export const CONSOLE_CSS = `
:root { color-scheme: light dark; --ok: #2f9e44; --bad: #e03131; --run: #1c7ed6; --wait: #868e96; --cancel: #f08c00; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, sans-serif; }
header { display: flex; gap: 1rem; align-items: center; padding: .5rem 1rem; border-bottom: 1px solid #8884; }
nav { display: flex; gap: .75rem; flex: 1; }
nav a { text-decoration: none; }
main { padding: 1rem; max-width: 1200px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid #8883; vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.bar { width: 160px; height: 10px; background: #8883; border-radius: 5px; overflow: hidden; display: inline-block; vertical-align: middle; }
.bar > span { display: block; height: 100%; background: var(--run); transition: width .2s; }
.status { font-weight: 600; }
.status.completed { color: var(--ok); } .status.failed { color: var(--bad); }
.status.running { color: var(--run); } .status.pending { color: var(--wait); } .status.cancelled { color: var(--cancel); }
.live { font-size: 12px; color: var(--wait); } .live.on { color: var(--ok); }
.filters { display: flex; gap: .5rem; margin-bottom: .75rem; align-items: center; }
.cards { display: flex; gap: 1rem; flex-wrap: wrap; margin-bottom: 1rem; }
.card { border: 1px solid #8884; border-radius: 6px; padding: .5rem 1rem; min-width: 8rem; }
.card b { display: block; font-size: 1.5rem; }
.chart { display: flex; align-items: flex-end; gap: 3px; height: 120px; border-bottom: 1px solid #8886; }
.chart > div { flex: 1; display: flex; flex-direction: column-reverse; min-width: 6px; }
.chart .completed { background: var(--ok); } .chart .failed { background: var(--bad); } .chart .cancelled { background: var(--cancel); }
.log { font: 12px/1.45 ui-monospace, monospace; background: #8881; padding: .5rem; overflow: auto; max-height: 28rem; white-space: pre-wrap; overflow-wrap: anywhere; }
.log .line { padding-left: .4rem; border-left: 3px solid transparent; }
.log .line time { color: var(--wait); }
.log .line.stderr { border-left-color: var(--bad); color: var(--bad); }
.log .note, .log-state { color: var(--wait); font-style: italic; }
pre { background: #8881; padding: .5rem; overflow: auto; max-height: 24rem; }
.error { color: var(--bad); }
form.token { display: flex; flex-direction: column; gap: .5rem; max-width: 28rem; }
`;
