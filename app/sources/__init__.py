"""The sources catalog: which Fivetran services this deployment onboards, with form schemas."""
