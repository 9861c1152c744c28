"""SignalStack's Grafana dashboards as code (grafana-foundation-sdk): ``python -m grafana``
(``make dashboards``) writes the JSON the chart ships (charts/signalstack/charts/monitoring/
files/dashboards/) and a plain Grafana provisions (grafana/provisioning/)."""
