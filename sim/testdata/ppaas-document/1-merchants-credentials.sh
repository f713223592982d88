curl --key conf/client.key --cert conf/client.pem --cacert conf/bundle.pem -X GET \
--header 'Content-Type: application/json' \
https://auth.demo.ppaas.tech/oauth2-mtls/v1/merchants-credentials?serial_number=220597303201181723869389
