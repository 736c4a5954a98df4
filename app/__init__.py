"""pbf-headless: headless Powered-by-Fivetran onboarding service."""
