/** Who the identity provider says signed in (after every validation passed). */
export interface SsoIdentity {
  /** The provider's stable id for the user (OIDC `sub`, SAML NameID). */
  subject: string;
  email: string | undefined;
  /** False when the provider says the address is not verified (such logins are refused). */
  emailVerified: boolean;
  name: string;
  groups: string[];
}
