// Estate console: progressive enhancement of server-rendered pages.
// - Live: a region marked data-live-events is rendered again by the server on each event of the SSE stream.
// - Actions: forms marked .action are sent to /api/v1 as JSON with the session's CSRF token; a 202 job is
//   followed to its end; a refusal (problem+json) is shown word for word.
// - Controls: buttons marked data-confirm open a dialog with what the server says the command will do.
// - A deployment's log (data-log-stream) grows as Terraform writes it.
"use strict";

(() => {
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";
  const announcer = document.getElementById("announcer");
  const dialog = document.getElementById("confirm");
  const live = document.getElementById("live");
  const EVENT_KINDS = ["rollout", "target", "wave", "gate", "env", "command", "deployment"];
  const JOB_WAIT_SECONDS = 10;

  function announce(text) {
    if (announcer) {
      announcer.textContent = "";
      window.setTimeout(() => { announcer.textContent = text; }, 50);
    }
  }

  function problemText(problem, status) {
    if (!problem || typeof problem !== "object") {
      return `The server answered ${status}.`;
    }
    const code = problem.status || status;
    const head = problem.title ? `${problem.title}${code ? ` (${code})` : ""}: ` : "";
    const detail = problem.detail || problem.message || "";
    return head + detail + (problem.hint ? ` Hint: ${problem.hint}` : "");
  }

  function show(output, text, kind) {
    if (!output) {
      return;
    }
    output.replaceChildren();
    const p = document.createElement("p");
    p.className = kind;
    if (kind === "problem") {
      p.setAttribute("role", "alert");
    }
    p.textContent = text;
    output.append(p);
  }

  async function readJson(response) {
    try {
      return await response.json();
    } catch {
      return null;
    }
  }

  // -- live regions ---------------------------------------------------------------------------

  let refreshing = false;
  let again = false;
  let timer = null;

  function scheduleRefresh() {
    if (timer === null) {
      timer = window.setTimeout(() => { timer = null; refresh(); }, 250);
    }
  }

  async function refresh() {
    if (!live) {
      return;
    }
    if (refreshing || (dialog && dialog.open)) {
      again = true;
      return;
    }
    refreshing = true;
    again = false;
    try {
      const response = await fetch(window.location.href, {
        headers: { "X-Estate-Partial": "live", Accept: "text/html" },
        credentials: "same-origin",
      });
      if (response.redirected || response.status === 401) {
        window.location.reload(); // the session ended: the page itself goes to the login page
      } else if (response.ok) {
        replaceLive(await response.text());
      }
    } finally {
      refreshing = false;
      if (again) {
        scheduleRefresh();
      }
    }
  }

  function replaceLive(html) {
    const open = new Set([...live.querySelectorAll("details[open][id]")].map((d) => d.id));
    const closed = new Set([...live.querySelectorAll("details[id]:not([open])")].map((d) => d.id));
    const focused = document.activeElement;
    const focusKey = focused && live.contains(focused) ? focused.dataset.control || focused.id : null;
    const phase = live.querySelector("[data-phase]")?.dataset.phase;
    live.innerHTML = html;
    for (const d of live.querySelectorAll("details[id]")) {
      if (open.has(d.id)) {
        d.open = true;
      } else if (closed.has(d.id)) {
        d.open = false;
      }
    }
    if (focusKey) {
      const target = live.querySelector(`[data-control="${CSS.escape(focusKey)}"]`) || document.getElementById(focusKey);
      target?.focus();
    }
    const now = live.querySelector("[data-phase]")?.dataset.phase;
    if (phase && now && phase !== now) {
      announce(`Now ${now.replaceAll("_", " ")}.`);
    }
  }

  if (live && live.dataset.liveEvents) {
    const source = new EventSource(live.dataset.liveEvents);
    for (const kind of EVENT_KINDS) {
      source.addEventListener(kind, scheduleRefresh);
    }
    window.addEventListener("pagehide", () => source.close());
  }

  // -- a deployment's log ---------------------------------------------------------------------

  const log = document.querySelector("[data-log-stream]");
  if (log) {
    const source = new EventSource(log.dataset.logStream);
    source.addEventListener("log", (event) => {
      const entry = JSON.parse(event.data);
      const atEnd = window.innerHeight + window.scrollY >= document.body.scrollHeight - 40;
      const li = document.createElement("li");
      li.dataset.seq = String(entry.seq);
      li.textContent = entry.text;
      log.append(li);
      if (atEnd) {
        li.scrollIntoView({ block: "nearest" });
      }
    });
    source.addEventListener("end", () => {
      source.close();
      document.querySelector(".live-note")?.remove();
      refresh();
      announce("The deployment has ended.");
    });
    window.addEventListener("pagehide", () => source.close());
  }

  // -- confirmations --------------------------------------------------------------------------

  let opener = null;

  async function openConfirmation(button) {
    const body = dialog.querySelector(".dialog-body");
    const response = await fetch(button.dataset.confirm, { headers: { Accept: "text/html" }, credentials: "same-origin" });
    const html = await response.text();
    if (!response.ok) {
      const doc = new DOMParser().parseFromString(html, "text/html");
      body.replaceChildren();
      const p = document.createElement("p");
      p.className = "problem";
      p.setAttribute("role", "alert");
      p.textContent = doc.querySelector(".problem")?.textContent || `The server answered ${response.status}.`;
      const close = document.createElement("button");
      close.type = "button";
      close.dataset.close = "";
      close.textContent = "Close";
      body.append(p, close);
    } else {
      body.innerHTML = html;
    }
    opener = button.dataset.control || null;
    dialog.showModal();
    body.querySelector("select, input, button[type=submit]")?.focus();
  }

  if (dialog) {
    dialog.addEventListener("close", () => {
      const back = opener && document.querySelector(`[data-control="${CSS.escape(opener)}"]`);
      back?.focus();
      if (again) {
        scheduleRefresh();
      }
    });
  }

  document.addEventListener("click", (event) => {
    const control = event.target.closest("[data-confirm]");
    if (control) {
      event.preventDefault();
      if (control.getAttribute("aria-disabled") === "true") {
        announce(`Not allowed: ${control.title}`);
        return;
      }
      openConfirmation(control);
      return;
    }
    if (event.target.closest("[data-close]")) {
      event.target.closest("dialog")?.close();
    }
  });

  // -- actions through /api/v1 ----------------------------------------------------------------

  function bodyOf(form) {
    const body = JSON.parse(form.dataset.body || "{}");
    for (const field of form.elements) {
      if (!field.name) {
        continue;
      }
      body[field.name] = field.type === "checkbox" ? field.checked : field.value;
    }
    return body;
  }

  async function followJob(location, output) {
    for (;;) {
      const response = await fetch(`${location}?wait=${JOB_WAIT_SECONDS}`, {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      const job = await readJson(response);
      if (!response.ok) {
        throw new Error(problemText(job, response.status));
      }
      if (["succeeded", "failed", "interrupted"].includes(job.status)) {
        return job;
      }
      const p = job.progress;
      const counted = p.total ? ` ${p.done.length} of ${p.total}` : "";
      show(output, `${job.kind}: ${p.label || job.status}${counted}…`, "progress");
    }
  }

  async function afterwards(form, result, job) {
    const then = form.dataset.then;
    if (then === "rollout") {
      window.location.assign(`/rollouts/${encodeURIComponent(result.id)}`);
    } else if (then === "fragment") {
      const response = await fetch(`${form.dataset.fragment}?job=${job.id}`, {
        headers: { Accept: "text/html" },
        credentials: "same-origin",
      });
      const target = document.querySelector(form.dataset.target);
      target.innerHTML = await response.text();
      show(form.querySelector("output.outcome"), "The preview is below.", "progress");
      target.querySelector("[tabindex='-1']")?.focus();
    } else {
      form.closest("dialog")?.close();
      announce("Done.");
      refresh();
    }
  }

  async function send(form) {
    const output = form.querySelector("output.outcome");
    const submit = form.querySelector("button[type=submit]");
    if (submit?.getAttribute("aria-disabled") === "true") {
      show(output, `Not allowed: ${submit.title}`, "problem");
      return;
    }
    if (submit) {
      submit.disabled = true;
    }
    show(output, "Sending…", "progress");
    try {
      const response = await fetch(form.dataset.api, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": csrf },
        credentials: "same-origin",
        body: JSON.stringify(bodyOf(form)),
      });
      const answer = await readJson(response);
      if (response.status === 202) {
        const job = await followJob(response.headers.get("Location"), output);
        if (job.status !== "succeeded") {
          const error = job.error || { message: `the job was ${job.status}` };
          show(output, problemText({ title: error.category, detail: error.message, hint: error.hint }, 0), "problem");
          return;
        }
        show(output, "Done.", "progress");
        await afterwards(form, job.result, job);
      } else if (response.ok) {
        show(output, "Done.", "progress");
        await afterwards(form, answer, null);
      } else {
        show(output, problemText(answer, response.status), "problem");
      }
    } catch (error) {
      show(output, `Could not reach the server: ${error.message}`, "problem");
    } finally {
      if (submit) {
        submit.disabled = false;
      }
    }
  }

  document.addEventListener("submit", (event) => {
    const form = event.target.closest("form.action");
    if (form) {
      event.preventDefault();
      send(form);
    }
  });
})();
