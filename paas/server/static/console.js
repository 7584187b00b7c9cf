// The console's behaviour: the token kept in this tab (sessionStorage) and sent as a bearer
// header with every request htmx or this file makes; one change stream per page that tells
// htmx to fetch the page's fragments again; the logs stream; tabs, toggles, copy buttons.
// Everything shown from the server arrives as escaped HTML or is set with textContent.
"use strict";

const TOKEN = "paas-token";
const LOG_LINES = 2000; // the logs view keeps this many lines
const token = () => sessionStorage.getItem(TOKEN);
const auth = () => ({ Authorization: "Bearer " + token() });
const $ = (id) => document.getElementById(id);
const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
let streams = null; // aborts this page's streams on log out
let leaving = false; // the app this page shows is being deleted: ask nothing more of it

document.addEventListener("htmx:configRequest", (event) => {
  if (leaving && event.detail.verb === "get") return event.preventDefault();
  if (token()) event.detail.headers.Authorization = "Bearer " + token();
});
document.addEventListener("htmx:beforeRequest", (event) => {
  if (event.detail.elt.id === "delete-form") {
    leaving = true;
    if (streams) streams.abort();
  }
});
document.addEventListener("htmx:afterRequest", (event) => {
  const xhr = event.detail.xhr;
  if (xhr && xhr.status === 401) loggedOut("The control plane refused the token: log in again.");
  const form = event.detail.elt;
  if (form && form.id === "config-form" && event.detail.successful) form.reset();
});

function show(loggedIn) {
  $("login").hidden = loggedIn;
  $("main").hidden = !loggedIn;
  $("logout").hidden = !loggedIn;
}

function loggedOut(message) {
  sessionStorage.removeItem(TOKEN);
  if (streams) streams.abort();
  streams = null;
  show(false);
  $("login-error").textContent = message;
  $("token").focus();
}

async function logIn(event) {
  event.preventDefault();
  const value = $("token").value.trim();
  const answer = await fetch("/api/v1/apps", { headers: { Authorization: "Bearer " + value } });
  if (!answer.ok) {
    $("login-error").textContent = (await answer.json()).error;
    return;
  }
  sessionStorage.setItem(TOKEN, value);
  $("token").value = "";
  $("login-error").textContent = "";
  start();
}

function start() {
  show(true);
  streams = new AbortController();
  document.body.dispatchEvent(new CustomEvent("paas:ready"));
  follow(() => "/console/events", streams.signal, changed);
  const log = $("log");
  if (log) followLogs(log, streams.signal);
}

// Streams: fetch (EventSource can't send the token), read line by line, open again when it ends.

async function follow(url, signal, onLine) {
  while (!signal.aborted) {
    try {
      const answer = await fetch(url(), { headers: auth(), signal });
      if (answer.status === 401) return loggedOut("The control plane refused the token: log in again.");
      if (answer.ok) await lines(answer, onLine);
    } catch (error) {
      if (signal.aborted) return;
    }
    await pause(1000);
  }
}

async function lines(answer, onLine) {
  const reader = answer.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n")) >= 0) {
      onLine(buffer.slice(0, end));
      buffer = buffer.slice(end + 1);
    }
  }
}

function changed(line) {
  if (line.startsWith("event: changed")) htmx.trigger(document.body, "paas:changed");
}

function followLogs(log, signal) {
  const filter = $("log-container");
  const containers = new Set();
  const add = (line) => {
    const match = /^([\w.-]+) \| /.exec(line);
    const container = match ? match[1] : "";
    if (container && !containers.has(container)) {
      containers.add(container);
      filter.add(new Option(container, container));
    }
    const row = document.createElement("div");
    row.textContent = line;
    row.dataset.container = container;
    row.hidden = filter.value !== "" && filter.value !== container;
    const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.append(row);
    while (log.childElementCount > LOG_LINES) log.firstElementChild.remove();
    if (atEnd) log.scrollTop = log.scrollHeight;
  };
  filter.addEventListener("change", () => {
    for (const row of log.children) row.hidden = filter.value !== "" && filter.value !== row.dataset.container;
  });
  const app = encodeURIComponent(log.dataset.app);
  let first = true; // after the first stream, only new lines: the ones before are shown already
  follow(() => {
    const tail = first ? 200 : 0;
    first = false;
    return `/api/v1/apps/${app}/logs?follow=1&tail=${tail}`;
  }, signal, add);
}

// Tabs (arrow keys move between them), toggles, copy buttons, typed confirmation.

function selectTab(tab) {
  for (const other of tab.parentElement.querySelectorAll("[role=tab]")) {
    const selected = other === tab;
    other.setAttribute("aria-selected", String(selected));
    other.tabIndex = selected ? 0 : -1;
    $(other.getAttribute("aria-controls")).hidden = !selected;
  }
  if (tab.id === "tab-processes") htmx.trigger(document.body, "paas:processes");
}

document.addEventListener("click", (event) => {
  const tab = event.target.closest("[role=tab]");
  if (tab) return selectTab(tab);
  const toggle = event.target.closest("button.toggle");
  if (toggle) {
    const target = $(toggle.getAttribute("aria-controls"));
    target.hidden = !target.hidden;
    toggle.setAttribute("aria-expanded", String(!target.hidden));
    const field = target.querySelector("textarea, input");
    if (!target.hidden && field) field.focus();
    return;
  }
  const copy = event.target.closest("button.copy");
  if (copy) copyText(copy);
});

document.addEventListener("keydown", (event) => {
  const tab = event.target.closest && event.target.closest("[role=tab]");
  if (!tab) return;
  const tabs = [...tab.parentElement.querySelectorAll("[role=tab]")];
  const moves = { ArrowRight: 1, ArrowLeft: -1, Home: -tabs.indexOf(tab), End: tabs.length - 1 - tabs.indexOf(tab) };
  if (!(event.key in moves)) return;
  event.preventDefault();
  const next = tabs[(tabs.indexOf(tab) + moves[event.key] + tabs.length) % tabs.length];
  selectTab(next);
  next.focus();
});

async function copyText(button) {
  try {
    await navigator.clipboard.writeText(button.dataset.copy);
    button.textContent = "Copied";
  } catch (error) {
    // No clipboard here (a page not on https or loopback): select the text for Ctrl-C.
    const range = document.createRange();
    range.selectNodeContents(button.previousElementSibling);
    getSelection().removeAllRanges();
    getSelection().addRange(range);
    button.textContent = "Selected";
  }
  setTimeout(() => (button.textContent = "Copy"), 2000);
}

document.addEventListener("input", (event) => {
  const typed = event.target;
  if (typed.dataset && typed.dataset.mustBe !== undefined) {
    typed.form.querySelector("button[type=submit]").disabled = typed.value !== typed.dataset.mustBe;
  }
});

// Relative times ("3 min ago") stay true between updates; the exact time is their title.
function ago(at) {
  const seconds = Math.max(0, Math.floor((Date.now() - at) / 1000));
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["min", 60]]) {
    if (seconds >= size) return `${Math.floor(seconds / size)} ${unit} ago`;
  }
  return `${seconds} s ago`;
}
setInterval(() => {
  for (const time of document.querySelectorAll("time[datetime]")) time.textContent = ago(Date.parse(time.dateTime));
}, 10000);
setInterval(() => {
  const processes = $("panel-processes");
  if (processes && !processes.hidden && token()) htmx.trigger(document.body, "paas:processes");
}, 5000);

// After htmx has set up the page (its own DOMContentLoaded handler was added first).
document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", logIn);
  $("logout").addEventListener("click", () => loggedOut(""));
  if (token()) start();
  else loggedOut("");
});
