-- A trusted issuer may carry the PEM CA bundle its discovery and JWKS endpoints are served
-- under (a Kubernetes cluster's own CA), used instead of the public roots for that issuer.
ALTER TABLE trusted_issuers ADD COLUMN ca_bundle TEXT;
