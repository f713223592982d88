curl --key conf/client.key --cert conf/client.pem --cacert conf/bundle.pem -X POST \
--header 'Content-Type: application/x-www-form-urlencoded' \
--data-urlencode "client_id=${client_id}" \
--data-urlencode "client_secret=${client_secret}" \
--data-urlencode 'grant_type=client_credentials' \
https://auth.device.demo.ppaas.tech:9021/oauth2-mtls/v1/token
