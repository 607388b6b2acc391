// The admin API (docs/admin.md). Reads are plain GETs with the session cookie; every change
// carries the session's CSRF token in X-CSRF-Token, which a cross-site page cannot read.

let csrf = null;

export class ApiError extends Error {
  constructor(status, code) {
    super(`${code} (HTTP ${status})`);
    this.status = status;
    this.code = code;
  }
}

async function call(method, path, body, contentType) {
  const headers = {Accept: 'application/json'};
  if (method !== 'GET') headers['X-CSRF-Token'] = csrf || '';
  let payload;
  if (body instanceof Blob || body instanceof ArrayBuffer) {
    payload = body;
    headers['Content-Type'] = contentType || 'application/octet-stream';
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    headers['Content-Type'] = 'application/json';
  }
  const response = await fetch(path, {method, headers, body: payload, credentials: 'same-origin'});
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (response.status === 401) {
    // The session ended (revoked, expired): reloading the page goes through the login.
    window.location.reload();
    throw new ApiError(401, data?.error || 'unauthenticated');
  }
  if (!response.ok && !(response.status === 422 && data)) {
    throw new ApiError(response.status, data?.error || response.statusText);
  }
  return data;
}

/** Who is signed in, and the CSRF token for changes. */
export async function session() {
  const me = await call('GET', '/admin/api/csrf');
  csrf = me.token;
  return me;
}

export const get = (path) => call('GET', path);
export const post = (path, body, contentType) => call('POST', path, body, contentType);
export const patch = (path, body) => call('PATCH', path, body);
export const del = (path) => call('DELETE', path);

/** `?a=1&b=2` from the non-empty entries of `params`. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const text = q.toString();
  return text ? `?${text}` : '';
}
