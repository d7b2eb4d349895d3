// Shows /api/health; the button writes a row through /api/visits. No inline script (CSP: script-src 'self').
"use strict";
async function refresh() {
  try {
    const res = await fetch("/api/health", { cache: "no-store" });
    const body = await res.json();
    for (const key of ["status", "postgres", "redis"]) {
      document.getElementById(key).textContent = body[key];
    }
  } catch (err) {
    document.getElementById("status").textContent = `unreachable: ${err.message}`;
  }
}
document.getElementById("visit").addEventListener("click", async () => {
  const res = await fetch("/api/visits", { method: "POST" });
  const body = await res.json();
  document.getElementById("visits").textContent = res.ok ? `${body.count} visits` : body.error;
});
refresh();
setInterval(refresh, 10000);
