/**
 * The web console in a real browser (SPEC §6): Debian's chromium driven by playwright-core
 * against a real daemon with tokens. A wrong token sees nothing; the right one sees a running
 * instance's bar move without a reload, opens it, stops it and sees it end cancelled, and reads
 * another's log live on its page, stderr marked, to its end.
 * Screenshots go to test-results/console/. CI installs chromium (.ci/run); where it is missing
 * the test is skipped and says so.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PlatformExecutor, setExecutor } from "numerous-tasks";
import { type Browser, chromium } from "playwright-core";
import { afterEach, describe, expect, it } from "vitest";
import { slowCount } from "./fixtures/contract-tasks.js";
import { printsBothAroundFlag } from "./fixtures/log-tasks.js";
import { type DaemonProcess, removeDataDir, startDaemon } from "./helpers/daemon-process.js";
import { until } from "./helpers/handles.js";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const HAVE_CHROMIUM = existsSync(CHROMIUM);
const SHOTS = join(import.meta.dirname, "..", "test-results", "console");
const TOKEN = "team-token-for-the-browser";
/** The page's globals, as the functions run in the browser see them (tests are typed for Node). */
interface PageGlobals {
  marker?: number;
  document: { querySelector(selector: string): { getAttribute(name: string): string | null } | null };
}

/** Long enough to find, see move and stop; it is stopped long before it ends. */
const STEPS = 600;
const STEP_MS = 100;

if (!HAVE_CHROMIUM) {
  console.warn(`console-browser: skipped, ${CHROMIUM} is missing (apt-get install chromium; .ci/run does)`);
}

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe.skipIf(!HAVE_CHROMIUM)(`web console in chromium (${CHROMIUM})`, () => {
  it("refuses a wrong token, then shows a bar moving live, stops an instance from its page, and follows another's log", async () => {
    const daemon: DaemonProcess = await startDaemon({
      args: ["--http", "127.0.0.1:0", "--tokens", `${TOKEN} team`],
    });
    cleanups.push(async () => {
      await daemon.stop();
      removeDataDir(daemon.dataDir);
    });
    const http = daemon.logs.find((entry) => entry.msg === "listening")?.http as string;
    const executor = new PlatformExecutor({
      address: daemon.address,
      accessToken: TOKEN,
      deploymentId: "team",
      tlsCaFile: undefined,
    });
    cleanups.push(() => executor.close());
    setExecutor(executor);
    const counting = slowCount(STEPS, STEP_MS);
    await until(counting, (i) => i.progress > 0, "the task to report progress");

    mkdirSync(SHOTS, { recursive: true });
    const browser: Browser = await chromium.launch({
      executablePath: CHROMIUM,
      // Chromium's sandbox refuses to start as root (CI containers run as root).
      args: process.getuid?.() === 0 ? ["--no-sandbox"] : [],
    });
    cleanups.push(() => browser.close());
    const page = await browser.newPage({ viewport: { width: 1200, height: 700 } });
    const urls: string[] = [];
    page.on("request", (request) => urls.push(request.url()));

    await page.goto(`http://${http}/#/instances`);
    // A wrong token: the form again, and nothing of the deployment on the page.
    await page.locator("form.token").waitFor();
    await page.fill("input[name=token]", "not-the-token");
    await page.fill("input[name=deployment]", "team");
    await page.click("form.token button");
    await page.getByText("The token was refused").waitFor();
    expect(await page.content()).not.toContain(counting.id);
    await page.screenshot({ path: join(SHOTS, "1-wrong-token.png") });

    await page.fill("input[name=token]", TOKEN);
    await page.fill("input[name=deployment]", "team");
    await page.click("form.token button");
    const row = page.locator(`tr[data-id="${counting.id}"]`);
    await row.waitFor();
    await page.locator("#live.on").waitFor();
    // No reload from here: a marker on the window survives only in the same document.
    await page.evaluate(() => {
      (globalThis as unknown as PageGlobals).marker = 1;
    });
    const bar = () => row.locator("[role=progressbar]").getAttribute("aria-valuenow");
    const first = Number(await bar());
    await page.waitForFunction(
      ({ id, from }) => {
        const now = (globalThis as unknown as PageGlobals).document
          .querySelector(`tr[data-id="${id}"] [role=progressbar]`)
          ?.getAttribute("aria-valuenow");
        return Number(now) > from;
      },
      { id: counting.id, from: first },
    );
    expect(Number(await bar())).toBeGreaterThan(first);
    expect(await page.evaluate(() => (globalThis as unknown as PageGlobals).marker)).toBe(1);
    await page.screenshot({ path: join(SHOTS, "2-instances-live.png") });

    await row.locator("a").click();
    await page.locator("#stop").waitFor();
    await page.locator('#status [data-status="running"]').waitFor();
    await page.screenshot({ path: join(SHOTS, "3-instance-running.png") });
    await page.click("#stop");
    await page.locator('#status [data-status="cancelled"]').waitFor();
    await until(counting, (i) => i.isDone(), "the stop to reach the SDK");
    expect(counting.status).toBe("cancelled");
    await page.screenshot({ path: join(SHOTS, "4-instance-cancelled.png") });

    await page.goto(`http://${http}/#/`);
    await page.locator('[data-count="cancelled"]').waitFor();
    expect(await page.locator('[data-count="cancelled"] b').textContent()).toBe("1");
    await page.screenshot({ path: join(SHOTS, "5-overview.png") });

    // An instance's page shows its log as it is printed, and says when it has ended.
    const dir = mkdtempSync(join(tmpdir(), "nt-console-browser-"));
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
    const flag = join(dir, "go");
    const printing = printsBothAroundFlag("b", flag);
    await until(printing, (i) => i.progress === 0.5, "the printing task to run");
    await page.goto(`http://${http}/#/instance/${printing.id}`);
    const logs = page.locator("#logs");
    await logs.locator(".line", { hasText: "b out 1" }).waitFor();
    await logs.locator('.line[data-stream="stderr"]', { hasText: "b err 1" }).waitFor();
    expect(await page.locator("#log-state").textContent()).toContain("Following");
    await page.evaluate(() => {
      (globalThis as unknown as PageGlobals).marker = 2;
    });
    await page.screenshot({ path: join(SHOTS, "6-instance-log-following.png") });
    writeFileSync(flag, "");
    await logs.locator(".line", { hasText: "b out 3" }).waitFor();
    await page.locator("#log-state", { hasText: "Log ended (completed)" }).waitFor();
    expect(await logs.locator(".line").allTextContents()).toHaveLength(5);
    expect(await logs.locator('.line[data-stream="stderr"]').allTextContents()).toEqual([
      expect.stringContaining("b err 1"),
      expect.stringContaining("b err 2"),
    ]);
    await page.locator('#status [data-status="completed"]').waitFor();
    // Followed live, in the same document.
    expect(await page.evaluate(() => (globalThis as unknown as PageGlobals).marker)).toBe(2);
    await page.screenshot({ path: join(SHOTS, "7-instance-log-ended.png") });

    // Everything came from the daemon, and no URL carried the token.
    for (const url of urls) {
      expect(url.startsWith(`http://${http}/`), url).toBe(true);
      expect(url).not.toContain(TOKEN);
    }
  }, 90_000);
});
