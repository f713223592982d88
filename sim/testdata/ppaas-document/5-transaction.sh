curl --location 'https://api.demo.ppaas.tech/qrcode-payment/v1/transactions' \
--header 'Authorization: Bearer JWTCustomTokenRetreivedFromPreviousCall' \
--header 'Content-Type: application/json' \
--data '{
    "paymentType": "KB",
    "paymentScenario": "consumerscan",
    "scannedPaymentId": "281666027690188713769014",
    "clientTransactionId": "9236613c-ef7e-4a98-bfb6-16048c0e4f9b",
    "paymentAmount": {
        "amount": 2000,
        "currency": "EUR"
    },
    "order": {
        "orderId": "628ac1ce-480a-40bd-8533-48a27371cac0",
        "orderDescription": "Venmo Test"
    }
}'
