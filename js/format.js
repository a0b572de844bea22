// How RunDetails writes numbers, times and paths.

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "?";
  const s = Math.round(seconds);
  const hours = Math.floor(s / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, "0");
  return hours ? `${hours}:${String(minutes).padStart(2, "0")}:${rest}` : `${minutes}:${rest}`;
}

export function bytes(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export function clock(timestamp) {
  if (!timestamp) return "";
  return new Date(timestamp * 1000).toLocaleString();
}

// While the run goes on, "Ns ago" stays true because every poll rewrites it; once the run has
// ended nothing does, so the time is shown as the clock time it happened.
export function ago(timestamp, final) {
  if (!timestamp) return "";
  if (final) return new Date(timestamp * 1000).toLocaleTimeString();
  return `${Math.max(0, Math.round(Date.now() / 1000 - timestamp))}s ago`;
}

export function rate(value) {
  if (!value) return "0";
  return value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(2);
}

export function baseName(path) {
  return path ? path.split(/[\\/]/).pop() : "";
}

function pageConfig() {
  const node = document.getElementById("jupyter-config-data");
  try {
    return node ? JSON.parse(node.textContent) : {};
  } catch (error) {
    return {};
  }
}

// Where `path` (absolute, on the kernel's machine) opens in this JupyterLab or Notebook 7
// (`url`), and its contents API address (`api`); null when it lies outside the server's root.
export function jupyterUrl(path, isFolder, home) {
  const config = pageConfig();
  let root = (config.serverRoot || "").replace(/\\/g, "/");
  if (!root || !path) return null;
  if (root.startsWith("~")) root = (home || "").replace(/\\/g, "/") + root.slice(1);
  root = root.replace(/\/+$/, "");
  const target = path.replace(/\\/g, "/");
  if (target !== root && !target.startsWith(root + "/")) return null;
  const relative = target.slice(root.length + 1).split("/").map(encodeURIComponent).join("/");
  const base = (config.baseUrl || "/").replace(/\/?$/, "/");
  return { url: appUrl(config, base, relative, isFolder), api: `${base}api/contents/${relative}?content=0`,
    token: config.token || "" };
}

function appUrl(config, base, relative, isFolder) {
  const notebook7 = config.appName === "Jupyter Notebook" || location.pathname.includes("/notebooks/");
  if (notebook7) return `${base}${isFolder ? "tree" : "edit"}/${relative}`;
  return `${base}lab/tree/${relative}`;
}

// Whether this Jupyter server serves `target` (it hides dot-folders such as .parallelrun
// unless started with --ContentsManager.allow_hidden=True).
export async function served(target) {
  try {
    const headers = target.token ? { Authorization: `token ${target.token}` } : {};
    const response = await fetch(target.api, { credentials: "same-origin", headers });
    return response.ok;
  } catch (error) {
    return false;
  }
}
