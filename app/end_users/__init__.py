"""End-users: who onboards (external id, restricted-key scoping), their Fivetran groups."""
