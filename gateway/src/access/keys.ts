import { timingSafeEqual } from "node:crypto";
import { type ApiKeyConfig, sha256 } from "./config";
import { AuthenticationError } from "../errors";

/** `Bearer <token>`, the scheme in any case, as the openai SDKs and curl's `-H` send it. */
const BEARER = /^bearer +(\S+) *$/i;

/** The token of an `Authorization: Bearer` header, or undefined when there is none. */
export function bearerToken(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  return BEARER.exec(header)?.[1];
}

/**
 * The configured gateway API keys, as SHA-256 hashes only. A presented key is hashed and compared with
 * every configured hash in constant time, and the loop never stops early: how long a check takes says
 * nothing about how close a guess was, nor which key it resembled.
 */
export class KeyRing {
  constructor(private readonly keys: readonly ApiKeyConfig[]) {}

  get enabled(): boolean {
    return this.keys.length > 0;
  }

  /** The key an `Authorization` header carries; throws AuthenticationError (401) otherwise. */
  identify(authorization: string | undefined): ApiKeyConfig {
    const token = bearerToken(authorization);
    if (token === undefined) throw new AuthenticationError(true);
    const hash = sha256(token);
    let found: ApiKeyConfig | undefined;
    for (const key of this.keys) {
      if (timingSafeEqual(hash, key.sha256) && found === undefined) found = key;
    }
    if (found === undefined) throw new AuthenticationError(false);
    return found;
  }
}

/** Whether an `Authorization` header carries exactly the key with this hash, compared in constant time. */
export function carriesKey(authorization: string | undefined, hash: Buffer): boolean {
  const token = bearerToken(authorization);
  return token !== undefined && timingSafeEqual(sha256(token), hash);
}
