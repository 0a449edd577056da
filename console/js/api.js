// Calls to the admin API (`/admin/v1`, relative to the page) with the admin's bearer token.

import { token } from './session.js';

/** A refused or failed call: its status, its JSON error body and request id. */
export class ApiError extends Error {
  constructor(status, body, requestId) {
    super((body && body.error_description) || (status ? `the broker answered ${status}` : 'the broker did not answer'));
    this.status = status;
    this.body = body;
    this.requestId = requestId;
  }
}

/**
 * `method path` under `/admin/v1` (`path` starts with `/`). Resolves to `{status, body,
 * etag, requestId}` for a 2xx answer; rejects with an ApiError otherwise. A 401 also tells
 * the page that the credential is no longer good.
 */
export async function api(method, path, { body, headers = {} } = {}) {
  return call(method, `v1${path}`, { body, headers, bearer: true });
}

/** `GET` of a broker path outside the admin API (`/readyz`), without credentials. */
export async function open(path) {
  return call('GET', `..${path}`, { headers: {}, bearer: false });
}

async function call(method, url, { body, headers, bearer }) {
  const init = {
    method,
    headers: { Accept: 'application/json', ...headers },
    cache: 'no-store',
    credentials: 'omit',
    redirect: 'error',
  };
  if (bearer) init.headers.Authorization = `Bearer ${token()}`;
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers['Content-Type'] = 'application/json';
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch {
    throw new ApiError(0, null, null);
  }
  const requestId = response.headers.get('X-Request-Id');
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (response.status === 401 && bearer) {
    window.dispatchEvent(new CustomEvent('console:unauthorized'));
  }
  if (!response.ok) throw new ApiError(response.status, json, requestId);
  return { status: response.status, body: json, etag: response.headers.get('ETag'), requestId };
}

/** Query text for a filter object, leaving out empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, v);
  }
  const text = q.toString();
  return text ? `?${text}` : '';
}
